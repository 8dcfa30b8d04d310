//! W3C Trace Context: the `traceparent` header and the id formats it carries.

/// The ids carried by a valid `traceparent` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceParent {
    pub trace_id: String,
    pub span_id: String,
}

impl TraceParent {
    /// Parses `version-traceid-parentid-flags`. Per the W3C spec an invalid header
    /// is ignored, so this returns `None` rather than an error.
    pub fn parse(header: &str) -> Option<TraceParent> {
        let mut parts = header.trim().split('-');
        let version = parts.next()?;
        let trace_id = parts.next()?;
        let span_id = parts.next()?;
        let flags = parts.next()?;
        // Version 00 has exactly four parts; later versions may append more.
        if version.len() != 2 || !is_lower_hex(version) || version == "ff" {
            return None;
        }
        if version == "00" && parts.next().is_some() {
            return None;
        }
        if flags.len() != 2 || !is_lower_hex(flags) {
            return None;
        }
        if !is_trace_id(trace_id) || !is_span_id(span_id) {
            return None;
        }
        Some(TraceParent {
            trace_id: trace_id.to_owned(),
            span_id: span_id.to_owned(),
        })
    }
}

/// 32 lowercase hex digits, not all zeros.
pub(crate) fn is_trace_id(id: &str) -> bool {
    id.len() == 32 && is_lower_hex(id) && !all_zeros(id)
}

/// 16 lowercase hex digits, not all zeros.
pub(crate) fn is_span_id(id: &str) -> bool {
    id.len() == 16 && is_lower_hex(id) && !all_zeros(id)
}

fn is_lower_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn all_zeros(s: &str) -> bool {
    s.bytes().all(|b| b == b'0')
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const SPAN: &str = "00f067aa0ba902b7";

    #[test]
    fn parses_a_valid_header() {
        let tp = TraceParent::parse(&format!("00-{TRACE}-{SPAN}-01")).expect("valid");
        assert_eq!(tp.trace_id, TRACE);
        assert_eq!(tp.span_id, SPAN);
    }

    #[test]
    fn ignores_malformed_headers() {
        for bad in [
            "",
            "00",
            &format!("00-{TRACE}-{SPAN}"),
            &format!("00-{}-{SPAN}-01", TRACE.to_uppercase()),
            &format!("00-{}-{SPAN}-01", "0".repeat(32)),
            &format!("00-{TRACE}-{}-01", "0".repeat(16)),
            &format!("ff-{TRACE}-{SPAN}-01"),
            &format!("00-{TRACE}-{SPAN}-01-extra"),
        ] {
            assert_eq!(TraceParent::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn accepts_future_versions_with_extra_fields() {
        assert!(TraceParent::parse(&format!("01-{TRACE}-{SPAN}-01-what-ever")).is_some());
    }

    #[test]
    fn checks_id_formats() {
        assert!(is_trace_id(TRACE));
        assert!(!is_trace_id(&TRACE[..31]));
        assert!(is_span_id(SPAN));
        assert!(!is_span_id("00F067AA0BA902B7"));
    }
}
