//! `loggate log`: send one record, print its id.

use std::process::ExitCode;

use super::{connect, Error};
use crate::config::LogArgs;
use crate::proto::v1 as pb;

pub async fn run(args: LogArgs) -> Result<ExitCode, Error> {
    let mut client = connect(&args.server).await?;
    let record = pb::LogRecord {
        service: args.service,
        node: args.node.unwrap_or_default(),
        level: args.level.to_wire() as i32,
        message: args.message,
        attributes: args.attributes.into_iter().collect(),
        trace_id: args.trace_id.unwrap_or_default(),
        span_id: args.span_id.unwrap_or_default(),
        id: args.id.unwrap_or_default(),
        ..Default::default()
    };
    let response = client
        .log(pb::LogRequest {
            record: Some(record),
        })
        .await
        .map_err(|status| Error::Refused {
            what: "the record was not accepted",
            status,
        })?;
    let response = response.into_inner();
    println!("{}", response.id);
    if response.spooled {
        // Accepted and safe, but not in RabbitMQ yet: worth knowing at a terminal.
        eprintln!(
            "loggate: RabbitMQ is unavailable; the gateway spooled the record and will publish it"
        );
    }
    Ok(ExitCode::SUCCESS)
}
