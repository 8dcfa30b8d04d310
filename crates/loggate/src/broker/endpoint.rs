//! Where RabbitMQ is, how to reach it (plain or TLS), and how to name it
//! without leaking its password.

use std::fmt;

use lapin::uri::{AMQPScheme, AMQPUri};

use super::AmqpsSettings;

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
    /// Parses `amqp[s]://user:pass@host:port/vhost`. The error names what is
    /// wrong without repeating the URL or any part of it.
    pub fn parse(url: &str) -> Result<Endpoint, String> {
        let mut uri: AMQPUri = url.parse().map_err(|e: String| {
            format!(
                "not an AMQP URL (amqp://user:password@host:port/vhost, or amqps:// for TLS): {}",
                parse_reason(&e, url)
            )
        })?;
        uri.query.frame_max.get_or_insert(DEFAULT_FRAME_MAX);
        Ok(Endpoint { uri: uri.into() })
    }

    /// The parsed URL, credentials included: only for connecting.
    pub(crate) fn uri(&self) -> AMQPUri {
        AMQPUri::clone(&self.uri)
    }

    /// `amqps://`: the connection must be TLS.
    pub(crate) fn is_tls(&self) -> bool {
        self.uri.scheme == AMQPScheme::AMQPS
    }
}

/// The parser's reason, made safe to show: amq-protocol-uri repeats the
/// whole input for a URL with no `//` after the scheme
/// (`Invalid URL: 'amqp:guest:s3cret@host'`), so such a message is replaced;
/// url's own messages ("invalid port number", "empty host") name no part of
/// the input.
fn parse_reason(reason: &str, url: &str) -> String {
    let echoes_input = !url.is_empty() && reason.contains(url);
    if echoes_input || reason.contains('@') {
        if !url.contains("://") {
            return "there is no \"//\" after the scheme".to_owned();
        }
        return "it cannot be parsed".to_owned();
    }
    reason.to_owned()
}

/// `url` with its credentials hidden, for `Debug` output of the flags: the
/// user information (everything before the last `@`) becomes `***`, and a
/// string that does not parse as an AMQP URL shows only its scheme, since
/// where its password is cannot be told.
pub fn redact_url(url: &str) -> String {
    let scheme_end = url.find("://").map(|i| i + 3);
    if let Some(at) = url.rfind('@') {
        let prefix = scheme_end.filter(|&end| end <= at).unwrap_or(0);
        return format!("{}***@{}", &url[..prefix], &url[at + 1..]);
    }
    if url.parse::<AMQPUri>().is_ok() {
        // No `@`: no credentials in it (lapin's default guest:guest applies).
        return url.to_owned();
    }
    match scheme_end {
        Some(end) => format!("{}(hidden: not a valid URL)", &url[..end]),
        None => "(hidden: not a valid URL)".to_owned(),
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.uri.authority.host, self.uri.authority.port)?;
        match (self.is_tls(), self.uri.vhost != "/") {
            (true, true) => write!(f, " (TLS, vhost {:?})", self.uri.vhost),
            (true, false) => f.write_str(" (TLS)"),
            (false, true) => write!(f, " (vhost {:?})", self.uri.vhost),
            (false, false) => Ok(()),
        }
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
    /// What `amqps://` connections trust and present.
    tls: AmqpsSettings,
}

impl Brokers {
    /// Parses each URL; a value may hold several, comma-separated. An error
    /// names the URL by its position (1st, 2nd…), never by its text.
    pub fn parse<S: AsRef<str>>(urls: &[S]) -> Result<Brokers, String> {
        let urls: Vec<&str> = urls
            .iter()
            .flat_map(|url| url.as_ref().split(','))
            .map(str::trim)
            .filter(|url| !url.is_empty())
            .collect();
        let several = urls.len() > 1;
        let endpoints: Vec<Endpoint> = urls
            .iter()
            .enumerate()
            .map(|(i, url)| {
                Endpoint::parse(url).map_err(|e| {
                    if several {
                        format!("URL {} of {}: {e}", i + 1, urls.len())
                    } else {
                        e
                    }
                })
            })
            .collect::<Result<_, _>>()?;
        if endpoints.is_empty() {
            return Err("no AMQP URL given".to_owned());
        }
        Ok(Brokers {
            endpoints: endpoints.into(),
            tls: AmqpsSettings::default(),
        })
    }

    /// Reads the URLs from a file (`--amqp-url-file`): one per line or
    /// comma-separated; blank lines and lines starting with `#` are skipped.
    /// Errors name the file, never its contents.
    pub fn parse_file(path: &std::path::Path) -> Result<Brokers, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("--amqp-url-file {}: cannot read it: {e}", path.display()))?;
        let urls: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|line| !line.starts_with('#'))
            .collect();
        Brokers::parse(&urls).map_err(|e| format!("--amqp-url-file {}: {e}", path.display()))
    }

    /// Uses `tls` for the `amqps://` brokers. TLS flags with a plaintext
    /// `amqp://` URL are refused, naming both: the user asked for TLS, and
    /// that broker would not get it.
    pub fn with_tls(self, tls: AmqpsSettings) -> Result<Brokers, String> {
        if let Some(flag) = tls.given().first() {
            if let Some(plain) = self.endpoints.iter().find(|e| !e.is_tls()) {
                return Err(format!(
                    "{flag} is for TLS, but the broker at {plain} is given as amqp:// (plaintext); \
                     use amqps:// for every broker, or drop the TLS flags"
                ));
            }
        }
        Ok(Brokers { tls, ..self })
    }

    /// lapin's TLS configuration for one connection attempt (used by
    /// `amqps://` brokers only).
    pub(crate) fn tls_config(&self) -> lapin::tcp::OwnedTLSConfig {
        self.tls.lapin_config()
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

    /// How many brokers there are (at least one).
    pub(crate) fn len(&self) -> usize {
        self.endpoints.len()
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
        for bad in [
            "http://u:s3cret@h",
            "amqp:guest:s3cret@host",
            "amqp:guest:s3cret@host:5672/%2f",
            "amqp://guest:s3cret@host:notaport/%2f",
            "amqp://guest:s3cret@[::1/%2f",
            "amqp://guest:s3cret@h/%ff",
            "amqp://guest:s3cret@h/%2f?frame_max=lots",
            "amqp://guest:s3cret@h/%2f?auth_mechanism=nope",
            "guest:s3cret@host",
            "s3cret",
        ] {
            let err = Endpoint::parse(bad).expect_err(bad);
            assert!(!err.contains("s3cret"), "{bad}: {err}");
            let err = Brokers::parse(&[format!("amqp://a/%2f,{bad}")]).expect_err(bad);
            assert!(err.starts_with("URL 2 of 2: "), "{err}");
            assert!(!err.contains("s3cret"), "{bad}: {err}");
        }
        let err = Endpoint::parse("amqp:guest:s3cret@host").expect_err("no //");
        assert!(err.contains("no \"//\" after the scheme"), "{err}");
    }

    #[test]
    fn urls_are_read_from_a_file() {
        let dir = std::env::temp_dir().join(format!("loggate-urls-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let file = dir.join("urls");
        std::fs::write(
            &file,
            "# the cluster\namqp://u:p@a:1/%2f, amqp://u:p@b:2/%2f\n\n  amqp://u:p@c:3/%2f  \n",
        )
        .expect("write");
        let brokers = Brokers::parse_file(&file).expect("valid file");
        assert_eq!(brokers.to_string(), "a:1, b:2, c:3");

        std::fs::write(&file, "amqp://u:p@a:1/%2f\namqp:guest:s3cret@b\n").expect("write");
        let err = Brokers::parse_file(&file).expect_err("second URL is malformed");
        assert!(
            err.starts_with("--amqp-url-file ") && err.contains("URL 2 of 2"),
            "{err}"
        );
        assert!(!err.contains("s3cret"), "{err}");

        std::fs::write(&file, "# nothing here\n\n").expect("write");
        let err = Brokers::parse_file(&file).expect_err("empty");
        assert!(err.contains("no AMQP URL given"), "{err}");

        let err = Brokers::parse_file(&dir.join("missing")).expect_err("missing");
        assert!(err.contains("cannot read it"), "{err}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn redaction_hides_the_credentials() {
        for (url, shown) in [
            (
                "amqp://guest:s3cret@rabbit:5672/%2f",
                "amqp://***@rabbit:5672/%2f",
            ),
            ("amqps://u:pa/s3cret@h/%2f", "amqps://***@h/%2f"),
            ("amqp://u:s3cret@x@h/%2f", "amqp://***@h/%2f"),
            ("amqp:guest:s3cret@host", "***@host"),
            ("amqp://rabbit:5672/%2f", "amqp://rabbit:5672/%2f"),
            ("amqp://guest:s3cret", "amqp://(hidden: not a valid URL)"),
            ("s3cret", "(hidden: not a valid URL)"),
        ] {
            assert_eq!(redact_url(url), shown, "{url}");
        }
    }

    #[test]
    fn amqps_is_shown_as_tls() {
        let endpoint = Endpoint::parse("amqps://u:p@h/%2f").expect("valid");
        assert!(endpoint.is_tls());
        assert_eq!(endpoint.to_string(), "h:5671 (TLS)");
        let endpoint = Endpoint::parse("amqps://u:p@h:5000/logs").expect("valid");
        assert_eq!(endpoint.to_string(), "h:5000 (TLS, vhost \"logs\")");
        assert!(!Endpoint::parse("amqp://u:p@h/%2f").expect("valid").is_tls());
    }

    #[test]
    fn tls_flags_with_a_plaintext_url_are_refused() {
        let dir = std::env::temp_dir().join(format!("loggate-endpoint-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let ca = dir.join("ca.pem");
        std::fs::write(
            &ca,
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
        )
        .expect("write");
        let tls = || {
            AmqpsSettings::load(super::super::AmqpsFiles {
                ca: Some(&ca),
                ..Default::default()
            })
            .expect("a CA file")
        };
        let mixed =
            Brokers::parse(&["amqps://u:p@a/%2f,amqp://u:s3cret@b:5672/%2f"]).expect("valid");
        let err = mixed.with_tls(tls()).expect_err("plaintext b");
        assert!(
            err.contains("--amqp-ca") && err.contains("b:5672") && err.contains("amqp://"),
            "{err}"
        );
        assert!(!err.contains("s3cret"), "{err}");
        let tls_only = Brokers::parse(&["amqps://u:p@a/%2f"]).expect("valid");
        assert!(tls_only.with_tls(tls()).is_ok());
        // Without TLS flags, plain URLs are fine and amqps uses the system roots.
        let plain = Brokers::parse(&["amqp://u:p@a/%2f"]).expect("valid");
        assert!(plain.with_tls(AmqpsSettings::default()).is_ok());
        let _ = std::fs::remove_dir_all(dir);
    }
}
