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

/// The brokers a gateway may use, in order of preference: the nodes of one
/// cluster, or standalone brokers behind the same names. A connection goes to
/// the first that answers; when it is lost, the next attempt starts with the
/// one after it, so a dead node is not retried first.
#[derive(Clone)]
pub struct Brokers {
    endpoints: std::sync::Arc<[Endpoint]>,
}

impl Brokers {
    /// Parses each URL; a value may hold several, comma-separated.
    pub fn parse<S: AsRef<str>>(urls: &[S]) -> Result<Brokers, String> {
        let endpoints: Vec<Endpoint> = urls
            .iter()
            .flat_map(|url| url.as_ref().split(','))
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .map(Endpoint::parse)
            .collect::<Result<_, _>>()?;
        if endpoints.is_empty() {
            return Err("no AMQP URL given".to_owned());
        }
        Ok(Brokers {
            endpoints: endpoints.into(),
        })
    }

    /// Every broker, starting with the one after `last` (or the first).
    pub(crate) fn starting_after(
        &self,
        after: Option<usize>,
    ) -> impl Iterator<Item = (usize, &Endpoint)> {
        let count = self.endpoints.len();
        let first = after.map_or(0, |i| (i + 1) % count);
        (0..count).map(move |k| {
            let i = (first + k) % count;
            (i, &self.endpoints[i])
        })
    }

    pub(crate) fn get(&self, index: usize) -> &Endpoint {
        &self.endpoints[index % self.endpoints.len()]
    }
}

impl fmt::Display for Brokers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, endpoint) in self.endpoints.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            fmt::Display::fmt(endpoint, f)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Brokers {
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
    fn several_brokers_are_tried_in_turn() {
        let brokers = Brokers::parse(&[
            "amqp://u:p@a:1/%2f,amqp://u:p@b:2/%2f",
            "amqp://u:p@c:3/%2f",
        ])
        .expect("valid");
        assert_eq!(brokers.to_string(), "a:1, b:2, c:3");
        let order = |after| {
            brokers
                .starting_after(after)
                .map(|(i, _)| i)
                .collect::<Vec<_>>()
        };
        assert_eq!(order(None), [0, 1, 2]);
        assert_eq!(order(Some(0)), [1, 2, 0]);
        assert_eq!(order(Some(2)), [0, 1, 2]);
        assert!(Brokers::parse(&[" , "]).is_err());
    }

    #[test]
    fn a_bad_url_is_refused_without_echoing_it() {
        let err = Endpoint::parse("http://u:s3cret@h").expect_err("refused");
        assert!(!err.contains("s3cret"), "{err}");
    }
}
