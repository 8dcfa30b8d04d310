//! `/api/tail`'s query string → a `TailRequest`, the very request a gRPC
//! Tail would send, so the page gets the Tail's semantics and nothing else.
//! Pure: the handler passes the raw query and the `Last-Event-ID` header.
//!
//! Every mistake is refused with the parameter's name (a 400), never
//! ignored: a typo in a filter must not silently show everything.

use std::time::Duration;

use time::OffsetDateTime;

use crate::proto::v1 as pb;
use crate::record::{timestamp, Filter, Invalid, Level};

/// The largest query string read; filters and a token need far less.
pub const MAX_QUERY_BYTES: usize = 8 * 1024;

/// Reads `query` (without the `?`) and the `Last-Event-ID` header into a
/// Tail request. A resume token (the header, else the `resume` parameter)
/// replaces any other start: a reconnecting browser repeats the URL it first
/// opened (with `since=5m`, say) and adds the header, and must continue
/// after the last record it saw, not five minutes back.
pub fn tail_request(query: &str, last_event_id: Option<&str>) -> Result<pb::TailRequest, Invalid> {
    if query.len() > MAX_QUERY_BYTES {
        return Err(Invalid::new(
            "query",
            format_args!("is {} bytes, more than {MAX_QUERY_BYTES}", query.len()),
        ));
    }
    let mut request = pb::TailRequest::default();
    let mut seen: Vec<&'static str> = Vec::new();
    let mut start: Option<(&'static str, pb::tail_request::Start)> = None;
    let mut resume: Option<String> = None;
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        let key: &'static str = match PARAMETERS.iter().find(|known| **known == key) {
            Some(known) => known,
            None => {
                return Err(Invalid::new(
                    format!("{key:?}"),
                    format_args!("unknown parameter; known: {}", PARAMETERS.join(", ")),
                ))
            }
        };
        if !REPEATABLE.contains(&key) {
            if seen.contains(&key) {
                return Err(Invalid::new(key, "given more than once"));
            }
            seen.push(key);
        }
        let value = value.trim();
        // An empty field of a form means "not set".
        if value.is_empty() {
            continue;
        }
        let mut set_start = |start_now: pb::tail_request::Start| match &start {
            Some((other, _)) => Err(Invalid::new(
                key,
                format_args!("cannot be combined with {other}: a tail has one start"),
            )),
            None => {
                start = Some((key, start_now));
                Ok(())
            }
        };
        use pb::tail_request::Start as S;
        match key {
            "service" => request.services.push(value.to_owned()),
            "node" => request.nodes.push(value.to_owned()),
            "level" => {
                let level = Level::from_word(&value.to_ascii_lowercase()).ok_or_else(|| {
                    Invalid::new(
                        "level",
                        format_args!(
                            "{value:?} is not a level: trace, debug, info, warn, error or fatal"
                        ),
                    )
                })?;
                request.min_level = level.to_wire() as i32;
            }
            "trace_id" => request.trace_id = value.to_owned(),
            "contains" => request.contains = value.to_owned(),
            "attr" => {
                let (k, v) = value.split_once(':').ok_or_else(|| {
                    Invalid::new("attr", format_args!("{value:?} is not key:value"))
                })?;
                if k.is_empty() {
                    return Err(Invalid::new(
                        "attr",
                        format_args!("{value:?} has an empty key"),
                    ));
                }
                if let Some(old) = request.attributes.insert(k.to_owned(), v.to_owned()) {
                    if old != v {
                        return Err(Invalid::new(
                            "attr",
                            format_args!("key {k:?} asks for two values, {old:?} and {v:?}"),
                        ));
                    }
                }
            }
            "since" => {
                let since = humantime::parse_duration(value).map_err(|error| {
                    Invalid::new(
                        "since",
                        format_args!("{value:?} is not a duration like 5m or 1h30m ({error})"),
                    )
                })?;
                set_start(S::Since(duration(since)))?;
            }
            "start_time" => {
                let at =
                    OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339)
                        .map_err(|error| {
                            Invalid::new(
                                "start_time",
                                format_args!(
                            "{value:?} is not an RFC 3339 time like 2026-11-26T02:00:00Z ({error})"
                        ),
                            )
                        })?;
                set_start(S::StartTime(timestamp(at)))?;
            }
            "from_beginning" => {
                if flag(key, value)? {
                    set_start(S::FromBeginning(true))?;
                }
            }
            "resume" => resume = Some(value.to_owned()),
            "history_only" => request.history_only = flag(key, value)?,
            "limit" => {
                request.limit = value.parse().map_err(|_| {
                    Invalid::new(
                        "limit",
                        format_args!("{value:?} is not a count from 0 to {}", u32::MAX),
                    )
                })?;
            }
            _ => unreachable!("every known parameter is handled"),
        }
    }
    let resume = last_event_id
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(str::to_owned)
        .or(resume);
    request.start = match resume {
        Some(token) => Some(pb::tail_request::Start::ResumeToken(token)),
        None => start.map(|(_, start)| start),
    };
    check_filter(&request)?;
    Ok(request)
}

/// Every parameter `/api/tail` reads.
const PARAMETERS: [&str; 12] = [
    "service",
    "level",
    "node",
    "trace_id",
    "attr",
    "contains",
    "since",
    "start_time",
    "from_beginning",
    "resume",
    "limit",
    "history_only",
];

/// Those that may be given more than once (all must match, or any service).
const REPEATABLE: [&str; 3] = ["service", "node", "attr"];

/// The Tail's own check of its filter, its messages naming the parameter
/// rather than the gRPC field.
fn check_filter(request: &pb::TailRequest) -> Result<(), Invalid> {
    Filter::from_request(request).map(drop).map_err(|invalid| {
        let field = match invalid.field.split_once('[') {
            Some(("services", index)) => {
                let index: usize = index.trim_end_matches(']').parse().unwrap_or(0);
                format!(
                    "service {:?}",
                    request.services.get(index).map_or("", String::as_str)
                )
            }
            _ if invalid.field == "min_level" => "level".to_owned(),
            _ => invalid.field,
        };
        Invalid::new(field, invalid.reason)
    })
}

fn flag(key: &str, value: &str) -> Result<bool, Invalid> {
    match value {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(Invalid::new(
            key,
            format_args!("{value:?} is not true, false, 1 or 0"),
        )),
    }
}

fn duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).expect("below 1e9"),
    }
}

#[cfg(test)]
mod tests {
    use pb::tail_request::Start as S;

    use super::*;

    fn parse(query: &str) -> pb::TailRequest {
        tail_request(query, None).expect("valid")
    }

    fn refusal(query: &str) -> String {
        tail_request(query, None).expect_err("refused").to_string()
    }

    #[test]
    fn filters_become_the_tail_requests_fields() {
        let request = parse(
            "service=checkout&service=billing&level=warn&node=pod-1&trace_id=4bf92f3577b34da6a3ce929d0e0e4736\
             &attr=region:eu&attr=url:http://x&contains=card%20declined&limit=5",
        );
        assert_eq!(request.services, ["checkout", "billing"]);
        assert_eq!(request.min_level, pb::Level::Warn as i32);
        assert_eq!(request.nodes, ["pod-1"]);
        assert_eq!(request.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(request.attributes["region"], "eu");
        // Split at the first colon: values may hold colons.
        assert_eq!(request.attributes["url"], "http://x");
        assert_eq!(request.contains, "card declined");
        assert_eq!(request.limit, 5);
        assert_eq!(request.start, None, "live by default");
    }

    #[test]
    fn empty_fields_are_unset() {
        assert_eq!(
            parse("service=&level=&contains=&since="),
            pb::TailRequest::default()
        );
    }

    #[test]
    fn starts_are_read_and_only_one_is_allowed() {
        assert_eq!(
            parse("since=5m").start,
            Some(S::Since(prost_types::Duration {
                seconds: 300,
                nanos: 0
            }))
        );
        assert_eq!(
            parse("from_beginning=true").start,
            Some(S::FromBeginning(true))
        );
        assert_eq!(parse("from_beginning=false").start, None);
        assert!(matches!(
            parse("start_time=2026-11-26T02:00:00Z").start,
            Some(S::StartTime(_))
        ));
        assert_eq!(
            refusal("since=5m&from_beginning=1"),
            "from_beginning: cannot be combined with since: a tail has one start"
        );
    }

    #[test]
    fn a_resume_token_replaces_the_first_start() {
        // The header wins over the parameter, and both over `since`.
        let request = tail_request("since=5m&resume=param", Some("header")).expect("valid");
        assert_eq!(request.start, Some(S::ResumeToken("header".into())));
        let request = tail_request("since=5m&resume=param", None).expect("valid");
        assert_eq!(request.start, Some(S::ResumeToken("param".into())));
        let request = tail_request("since=5m", Some("  ")).expect("valid");
        assert!(matches!(request.start, Some(S::Since(_))));
    }

    #[test]
    fn mistakes_are_refused_naming_the_parameter() {
        assert_eq!(
            refusal("level=loud"),
            "level: \"loud\" is not a level: trace, debug, info, warn, error or fatal"
        );
        assert!(refusal("since=soon").starts_with("since: \"soon\" is not a duration like 5m"));
        assert!(refusal("start_time=yesterday").starts_with("start_time: \"yesterday\" is not"));
        assert_eq!(refusal("attr=region"), "attr: \"region\" is not key:value");
        assert_eq!(refusal("attr=:eu"), "attr: \":eu\" has an empty key");
        assert_eq!(
            refusal("attr=a:1&attr=a:2"),
            "attr: key \"a\" asks for two values, \"1\" and \"2\""
        );
        assert_eq!(
            refusal("limit=-1"),
            "limit: \"-1\" is not a count from 0 to 4294967295"
        );
        assert_eq!(
            refusal("level=warn&level=info"),
            "level: given more than once"
        );
        assert_eq!(
            refusal("history_only=yes"),
            "history_only: \"yes\" is not true, false, 1 or 0"
        );
        assert!(refusal("servce=a").starts_with("\"servce\": unknown parameter; known: service,"));
        assert_eq!(
            refusal("service=ok&service=check%20out"),
            "service \"check out\": may only contain letters, digits, '_' and '-'"
        );
        assert_eq!(
            refusal("trace_id=xyz"),
            "trace_id: must be 32 lowercase hex digits, not all zeros"
        );
        let long = format!("contains={}", "a".repeat(MAX_QUERY_BYTES));
        assert!(refusal(&long).starts_with("query: is 8201 bytes"));
    }

    #[test]
    fn levels_are_read_in_any_case() {
        assert_eq!(parse("level=ERROR").min_level, pb::Level::Error as i32);
    }
}
