//! `loggate tail`: follow records live or from the past, printed as text or
//! JSON lines. Ctrl-C prints the token that resumes right after the last
//! record shown; `--follow-reconnect` uses it by itself when the gateway goes
//! away, and so does a tail given several `--server` gateways, at once, on
//! the next one.
//!
//! Over 400 lines because a quarter of it is the unit tests of the text
//! output's escaping; the code itself is one command.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use time::{macros::format_description, OffsetDateTime};
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio_stream::StreamExt;
use tonic::Code;

use super::{Error, Gateways};
use crate::config::{Output, TailArgs};
use crate::proto::v1::{self as pb, tail_request::Start};
use crate::record::{timestamp, Level, Record};

/// Pause before reconnecting with `--follow-reconnect`.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// How one connection's tail ended.
enum Ended {
    /// The limit was reached, or the gateway ended the stream cleanly.
    Finished,
    Interrupted,
    Failed(Error),
}

/// Where the tail is: the start asked for, then the token of the last record.
struct Position {
    start: Option<Start>,
    /// When the tail began, so a reconnect before any record loses nothing.
    began: OffsetDateTime,
    last_token: Option<String>,
    printed: u64,
    /// The `--server` gateway to try first: the one the tail is on.
    gateway: usize,
    /// Tails that ended in a retryable error since one last answered; a tail
    /// moves to the next gateway at once while some gateway is untried.
    failures: usize,
}

pub async fn run(args: TailArgs) -> Result<ExitCode, Error> {
    // One listener for the whole command, registered before the first
    // await: a Ctrl-C that lands while a line is being written is kept until
    // the next `recv`. (A fresh `ctrl_c()` per wait misses exactly that one.)
    let mut interrupt = signal(SignalKind::interrupt())
        .map_err(|error| Error::System(format!("cannot listen for Ctrl-C: {error}")))?;
    let mut position = Position {
        start: start(&args),
        began: OffsetDateTime::now_utc(),
        last_token: None,
        printed: 0,
        gateway: 0,
        failures: 0,
    };
    let gateways = Gateways::new(&args.server)?;
    let mut start = position.start.clone();
    loop {
        match follow(
            &args,
            &gateways,
            &mut position,
            start.take(),
            &mut interrupt,
        )
        .await
        {
            Ended::Finished => return Ok(ExitCode::SUCCESS),
            Ended::Interrupted => {
                hint(&position);
                return Ok(ExitCode::SUCCESS);
            }
            Ended::Failed(error) if retryable(&error) && position.failures < gateways.count() => {
                eprintln!("loggate: {error}; resuming on the next gateway");
                position.gateway = (position.gateway + 1) % gateways.count();
                start = resume_point(&position);
            }
            Ended::Failed(error) if args.follow_reconnect && retryable(&error) => {
                eprintln!(
                    "loggate: {error}; reconnecting in {}s",
                    RECONNECT_DELAY.as_secs()
                );
                tokio::select! {
                    () = tokio::time::sleep(RECONNECT_DELAY) => {}
                    _ = interrupt.recv() => {
                        hint(&position);
                        return Ok(ExitCode::SUCCESS);
                    }
                }
                position.failures = 0;
                position.gateway = (position.gateway + 1) % gateways.count();
                start = resume_point(&position);
            }
            Ended::Failed(error) => {
                hint(&position);
                return Err(error);
            }
        }
    }
}

fn start(args: &TailArgs) -> Option<Start> {
    if let Some(since) = args.since {
        return Some(Start::Since(prost_types::Duration {
            seconds: i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
            nanos: i32::try_from(since.subsec_nanos()).unwrap_or(0),
        }));
    }
    if let Some(at) = args.start_time {
        return Some(Start::StartTime(timestamp(at)));
    }
    if args.from_start {
        return Some(Start::FromBeginning(true));
    }
    args.resume.clone().map(Start::ResumeToken)
}

/// Where to (re)start: right after the last record shown; or, if none was
/// shown yet, where the user asked, with "live" pinned to when the tail began.
fn resume_point(position: &Position) -> Option<Start> {
    match (&position.last_token, &position.start) {
        (Some(token), _) => Some(Start::ResumeToken(token.clone())),
        (None, None) => Some(Start::StartTime(timestamp(position.began))),
        (None, start) => start.clone(),
    }
}

async fn follow(
    args: &TailArgs,
    gateways: &Gateways,
    position: &mut Position,
    start: Option<Start>,
    interrupt: &mut Signal,
) -> Ended {
    let limit = match args.limit {
        Some(limit) => match u64::from(limit).checked_sub(position.printed) {
            Some(0) | None => return Ended::Finished,
            Some(left) => u32::try_from(left).unwrap_or(u32::MAX),
        },
        None => 0,
    };
    let request = pb::TailRequest {
        services: args.services.clone(),
        min_level: args.level.map_or(0, |level| level.to_wire() as i32),
        nodes: args.nodes.clone(),
        trace_id: args.trace_id.clone().unwrap_or_default(),
        attributes: args.attributes.iter().cloned().collect(),
        contains: args.contains.clone().unwrap_or_default(),
        start,
        limit,
        history_only: args.history_only,
    };
    let opened = async {
        let (mut client, reached) = gateways.connect(position.gateway).await?;
        position.gateway = reached;
        client.tail(request).await.map_err(|status| Error::Refused {
            what: "the tail was refused",
            status,
        })
    };
    let opened = tokio::select! {
        opened = opened => opened,
        _ = interrupt.recv() => return Ended::Interrupted,
    };
    let mut stream = match opened {
        Ok(response) => response.into_inner(),
        // Every gateway was tried: none is left to move to at once.
        Err(error @ Error::Unreachable { .. }) => {
            position.failures = gateways.count();
            return Ended::Failed(error);
        }
        Err(error) => {
            position.failures += 1;
            return Ended::Failed(error);
        }
    };

    let stdout = std::io::stdout();
    let colour = args.output == Output::Text && stdout.is_terminal();
    let mut line = Vec::with_capacity(512);
    loop {
        let next = tokio::select! {
            next = stream.next() => next,
            _ = interrupt.recv() => return Ended::Interrupted,
        };
        let response = match next {
            None => return Ended::Finished,
            Some(Err(status)) => {
                position.failures += 1;
                return Ended::Failed(Error::Refused {
                    what: "the tail ended",
                    status,
                });
            }
            Some(Ok(response)) => {
                // Open and answering: only now is this gateway known good
                // (one that accepts tails and fails each at once must not
                // be bounced between without a pause).
                position.failures = 0;
                response
            }
        };
        let wire = match response.event {
            Some(pb::tail_response::Event::Record(wire)) => wire,
            Some(pb::tail_response::Event::Gap(gap)) => {
                eprintln!("loggate: gap: {}", gap.reason);
                continue;
            }
            Some(pb::tail_response::Event::CaughtUp(_)) => {
                if !args.history_only {
                    eprintln!("loggate: caught up; following live");
                }
                continue;
            }
            Some(pb::tail_response::Event::Heartbeat(_)) | None => continue,
        };
        let record = match Record::try_from(wire) {
            Ok(record) => record,
            Err(invalid) => {
                eprintln!("loggate: skipping a record the gateway sent malformed: {invalid}");
                continue;
            }
        };
        line.clear();
        match args.output {
            Output::Json => record.encode_into(&mut line),
            Output::Text => write_text(&mut line, &record, colour),
        }
        line.push(b'\n');
        let mut out = stdout.lock();
        if let Err(error) = out.write_all(&line).and_then(|()| out.flush()) {
            return Ended::Failed(Error::Output(error));
        }
        position.printed += 1;
        if !response.resume_token.is_empty() {
            position.last_token = Some(response.resume_token);
        }
    }
}

/// Tells the user how to continue where this tail stopped.
fn hint(position: &Position) {
    if let Some(token) = &position.last_token {
        eprintln!("loggate: resume after the last record with: --resume {token}");
    }
}

/// Whether the gateway going away (or being briefly unreachable) caused it.
fn retryable(error: &Error) -> bool {
    match error {
        Error::Unreachable { .. } => true,
        Error::Refused { status, .. } => matches!(
            status.code(),
            Code::Unavailable | Code::Unknown | Code::Cancelled | Code::Aborted | Code::Internal
        ),
        Error::BadServer { .. }
        | Error::Tls { .. }
        | Error::Output(_)
        | Error::File { .. }
        | Error::System(_)
        | Error::Usage(_) => false,
    }
}

/// `time level service node message k=v… [by=principal]`; the node is `-` when absent, and
/// values with spaces are quoted so a line splits cleanly on whitespace. Every field a client
/// wrote goes through [`put_escaped`]: a record must not be able to drive the reader's
/// terminal or forge a line of its own.
fn write_text(line: &mut Vec<u8>, record: &Record, colour: bool) {
    // Fixed width, milliseconds: columns line up; `--output json` keeps nanoseconds.
    let time = record
        .time
        .format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        ))
        .unwrap_or_else(|_| record.time.unix_timestamp().to_string());
    let level = format!("{:<5}", record.level.as_str());
    let level = if colour {
        format!("\x1b[{}m{level}\x1b[0m", ansi_colour(record.level))
    } else {
        level
    };
    let _ = write!(line, "{time} {level} ");
    put_escaped(line, &record.service, false);
    line.push(b' ');
    if record.node.is_empty() {
        line.push(b'-');
    } else {
        put_escaped(line, &record.node, false);
    }
    line.push(b' ');
    put_escaped(line, &record.message, false);
    for (key, value) in &record.attributes {
        line.push(b' ');
        put_escaped(line, key, false);
        line.push(b'=');
        if value.is_empty() || value.contains(char::is_whitespace) || value.contains('"') {
            line.push(b'"');
            put_escaped(line, value, true);
            line.push(b'"');
        } else {
            put_escaped(line, value, false);
        }
    }
    // Who wrote it, when the gateway authenticates callers: last, after the
    // record's own attributes.
    if !record.principal.is_empty() {
        line.extend_from_slice(b" by=");
        put_escaped(line, &record.principal, false);
    }
}

/// Appends `text` with every character that could act on a terminal or
/// disguise the text around it shown as a visible escape instead: `\e` for
/// ESC, `\n`, `\r`, `\t`, and `\u{..}` for the other C0 and C1 controls,
/// DEL, and the bidirectional and line-separator formatting characters.
/// Inside quotes, `"` and `\` are escaped too, so the quoted value ends where
/// it seems to.
fn put_escaped(line: &mut Vec<u8>, text: &str, quoted: bool) {
    let special = |c: char| needs_escape(c) || (quoted && matches!(c, '"' | '\\'));
    if !text.contains(special) {
        line.extend_from_slice(text.as_bytes());
        return;
    }
    let mut utf8 = [0u8; 4];
    for c in text.chars() {
        match c {
            '\x1b' => line.extend_from_slice(b"\\e"),
            '\n' => line.extend_from_slice(b"\\n"),
            '\r' => line.extend_from_slice(b"\\r"),
            '\t' => line.extend_from_slice(b"\\t"),
            '"' | '\\' if quoted => {
                line.push(b'\\');
                line.push(c as u8);
            }
            c if needs_escape(c) => {
                let _ = write!(line, "\\u{{{:x}}}", u32::from(c));
            }
            c => line.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes()),
        }
    }
}

/// C0 controls (ESC, CR, LF, TAB, BEL…), DEL and C1 controls (U+0080–U+009F,
/// e.g. the one-byte CSI U+009B), plus the invisible characters that reorder
/// or break the text around them: bidi embeddings, overrides and isolates,
/// the directional marks, and the Unicode line and paragraph separators.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        )
}

fn ansi_colour(level: Level) -> &'static str {
    match level {
        Level::Trace => "2",
        Level::Debug => "36",
        Level::Info => "32",
        Level::Warn => "33",
        Level::Error => "31",
        Level::Fatal => "1;31",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::fixture;

    fn text(record: &Record) -> String {
        let mut line = Vec::new();
        write_text(&mut line, record, false);
        String::from_utf8(line).expect("UTF-8")
    }

    #[test]
    fn an_ordinary_record_prints_as_before() {
        let record = Record {
            attributes: [("ms".into(), "950".into()), ("path".into(), "/a b".into())].into(),
            principal: "ci".into(),
            ..fixture::record()
        };
        assert_eq!(
            text(&record),
            "2023-11-14T22:13:20.123Z warn  billing pod-7 card declined \"twice\" ms=950 path=\"/a b\" by=ci"
        );
    }

    #[test]
    fn terminal_escapes_in_the_message_are_shown_not_obeyed() {
        let record = Record {
            message: "\x1b[31mred\x1b]0;pwned\x07 \u{9b}2J\x7f".into(),
            ..fixture::record()
        };
        let line = text(&record);
        assert!(
            line.ends_with(r"\e[31mred\e]0;pwned\u{7} \u{9b}2J\u{7f} order=42"),
            "{line}"
        );
        assert!(!line.contains(|c: char| c.is_control()), "{line:?}");
    }

    #[test]
    fn an_embedded_newline_cannot_forge_another_line() {
        let record = Record {
            message: "ok\n2023-11-14T22:13:20.123Z error admin - forged\r".into(),
            ..fixture::record()
        };
        let line = text(&record);
        assert!(!line.contains(['\n', '\r']), "{line:?}");
        assert!(
            line.contains(r"ok\n2023-11-14T22:13:20.123Z error admin - forged\r"),
            "{line}"
        );
    }

    #[test]
    fn bidi_overrides_cannot_reorder_what_is_shown() {
        let record = Record {
            message: "file\u{202e}txt.exe\u{2066}x\u{2069}\u{200f}".into(),
            ..fixture::record()
        };
        let line = text(&record);
        assert!(
            line.contains(r"file\u{202e}txt.exe\u{2066}x\u{2069}\u{200f}"),
            "{line}"
        );
    }

    #[test]
    fn every_field_a_client_wrote_is_escaped() {
        let record = Record {
            node: "pod\u{202e}7".into(),
            attributes: [
                ("k\x1b[2J".into(), "v\x1b[0m".into()),
                ("quoted".into(), "a \"b\"\t\\ \n".into()),
            ]
            .into(),
            principal: "svc\x07".into(),
            ..fixture::record()
        };
        let line = text(&record);
        assert!(!line.contains(|c: char| c.is_control()), "{line:?}");
        assert!(line.contains(r" pod\u{202e}7 "), "{line}");
        assert!(line.contains(r" k\e[2J=v\e[0m"), "{line}");
        assert!(line.contains(r#" quoted="a \"b\"\t\\ \n""#), "{line}");
        assert!(line.ends_with(r" by=svc\u{7}"), "{line}");
    }

    #[test]
    fn colour_is_the_only_escape_sequence_in_a_coloured_line() {
        let record = Record {
            message: "\x1b[5mblink".into(),
            ..fixture::record()
        };
        let mut line = Vec::new();
        write_text(&mut line, &record, true);
        let line = String::from_utf8(line).expect("UTF-8");
        assert_eq!(line.matches('\x1b').count(), 2, "{line:?}");
        assert!(line.contains(r"\e[5mblink"), "{line}");
    }
}
