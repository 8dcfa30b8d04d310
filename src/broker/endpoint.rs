//! Where RabbitMQ is, and how to name it without leaking its password.

use std::fmt;

use lapin::uri::AMQPUri;

/// An AMQP URL, parsed once. Its `Display` is `host:port/vhost`: safe for logs
/// and status messages, because the URL's password must never reach either.
#[derive(Clone)]
pub struct Endpoint {
    /// Shared: errors carry an `Endpoint`, so it must stay small and cheap to clone.
    uri: std::sync::Arc<AMQPUri>,
}

/// The frame size asked of the broker unless the URL sets `?frame_max=`.
/// lapin keeps 32 frames of send and of receive buffer per connection, zeroed
/// up front: at RabbitMQ's default of 128 KiB that is 8 MiB per connection.
/// 32 KiB frames cost a few more frames for large records and save 6 MiB each.
pub const DEFAULT_FRAME_MAX: u32 = 32 * 1024;

impl Endpoint {
    /// Parses `amqp://user:pass@host:port/vhost`. The error names what is wrong
    /// without repeating the URL.
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let mut uri: AMQPUri = url
            .parse()
            .map_err(|e| format!("not an AMQP URL (amqp://user:password@host:port/vhost): {e}"))?;
        uri.query.frame_max.get_or_insert(DEFAULT_FRAME_MAX);
        Ok(Endpoint { uri: uri.into() })
    }

    /// The parsed URL, credentials included: only for connecting.
    pub(crate) fn uri(&self) -> AMQPUri {
        AMQPUri::clone(&self.uri)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.uri.authority.host, self.uri.authority.port)?;
        if self.uri.vhost != "/" {
            write!(f, " (vhost {:?})", self.uri.vhost)?;
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
