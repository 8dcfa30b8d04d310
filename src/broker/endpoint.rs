//! Where RabbitMQ is, and how to name it without leaking its password.

use std::fmt;

use lapin::uri::AMQPUri;

/// An AMQP URL, parsed once. Its `Display` is `host:port/vhost`: safe for logs
/// and status messages, because the URL's password must never reach either.
#[derive(Clone)]
pub struct Endpoint {
    url: String,
    host: String,
    port: u16,
    vhost: String,
}

impl Endpoint {
    /// Parses `amqp://user:pass@host:port/vhost`. The error names what is wrong
    /// without repeating the URL.
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let uri: AMQPUri = url
            .parse()
            .map_err(|e| format!("not an AMQP URL (amqp://user:password@host:port/vhost): {e}"))?;
        Ok(Endpoint {
            url: url.to_owned(),
            host: uri.authority.host,
            port: uri.authority.port,
            vhost: uri.vhost,
        })
    }

    /// The full URL, credentials included: only for connecting.
    pub(crate) fn url(&self) -> &str {
        &self.url
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)?;
        if self.vhost != "/" {
            write!(f, " (vhost {:?})", self.vhost)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_never_shows_the_password() {
        let endpoint =
            Endpoint::parse("amqp://guest:s3cret@rabbit.internal:5673/%2f").expect("valid");
        let shown = format!("{endpoint} {endpoint:?}");
        assert_eq!(endpoint.to_string(), "rabbit.internal:5673");
        assert!(!shown.contains("s3cret"));
    }

    #[test]
    fn names_a_non_default_vhost() {
        let endpoint = Endpoint::parse("amqp://u:p@h:5672/logs").expect("valid");
        assert_eq!(endpoint.to_string(), "h:5672 (vhost \"logs\")");
    }

    #[test]
    fn a_bad_url_is_refused_without_echoing_it() {
        let err = Endpoint::parse("http://u:s3cret@h").expect_err("refused");
        assert!(!err.contains("s3cret"), "{err}");
    }
}
