//! `loggate tail`: follow records live and print them as text or JSON lines.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use time::macros::format_description;
use tokio_stream::StreamExt;

use super::{connect, Error};
use crate::config::{Output, TailArgs};
use crate::proto::v1 as pb;
use crate::record::{Level, Record};

pub async fn run(args: TailArgs) -> Result<ExitCode, Error> {
    let mut client = connect(&args.server.server).await?;
    let request = pb::TailRequest {
        services: args.services,
        min_level: args.level.map_or(0, |level| level.to_wire() as i32),
        nodes: args.nodes,
        trace_id: args.trace_id.unwrap_or_default(),
        attributes: args.attributes.into_iter().collect(),
        contains: args.contains.unwrap_or_default(),
        start: None,
        limit: 0,
    };
    let mut stream = client
        .tail(request)
        .await
        .map_err(|status| Error::Refused {
            what: "the tail was refused",
            status,
        })?
        .into_inner();

    let stdout = std::io::stdout();
    let colour = args.output == Output::Text && stdout.is_terminal();
    let mut line = Vec::with_capacity(512);
    loop {
        let next = tokio::select! {
            next = stream.next() => next,
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
        };
        let response = match next {
            None => return Ok(ExitCode::SUCCESS),
            Some(Err(status)) => {
                return Err(Error::Refused {
                    what: "the tail ended",
                    status,
                })
            }
            Some(Ok(response)) => response,
        };
        let Some(pb::tail_response::Event::Record(wire)) = response.event else {
            continue;
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
        out.write_all(&line)?;
        out.flush()?;
    }
}

/// `time level service node message k=v…`; the node is `-` when absent, and
/// values with spaces are quoted so a line splits cleanly on whitespace.
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
    let node = if record.node.is_empty() {
        "-"
    } else {
        &record.node
    };
    let _ = write!(
        line,
        "{time} {level} {} {node} {}",
        record.service, record.message
    );
    for (key, value) in &record.attributes {
        if value.is_empty() || value.contains(char::is_whitespace) || value.contains('"') {
            let _ = write!(line, " {key}={value:?}");
        } else {
            let _ = write!(line, " {key}={value}");
        }
    }
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
