//! `loggate log`: send one record, print its id. With several `--server`
//! gateways, a gateway that is down or answers UNAVAILABLE is followed by
//! the next, with the same record id, so a retry never makes a second record
//! for a consumer that deduplicates by id.

use std::process::ExitCode;

use tonic::Code;

use super::{Error, Gateways};
use crate::config::LogArgs;
use crate::proto::v1 as pb;

pub async fn run(args: LogArgs) -> Result<ExitCode, Error> {
    let gateways = Gateways::new(&args.server)?;
    let record = pb::LogRecord {
        service: args.service,
        node: args.node.unwrap_or_default(),
        level: args.level.to_wire() as i32,
        message: args.message,
        attributes: args.attributes.into_iter().collect(),
        trace_id: args.trace_id.unwrap_or_default(),
        span_id: args.span_id.unwrap_or_default(),
        // Chosen here rather than by the gateway so that every try carries it.
        id: args.id.unwrap_or_else(|| uuid::Uuid::now_v7().to_string()),
        ..Default::default()
    };
    // Each gateway is called at most once, in order; one that cannot be
    // reached is skipped (connect tries the following ones).
    let mut next = 0;
    let response = loop {
        let (mut client, reached) = gateways.connect_from(next).await?;
        let request = pb::LogRequest {
            record: Some(record.clone()),
        };
        match client.log(request).await {
            Ok(response) => break response,
            Err(status) if status.code() == Code::Unavailable && reached + 1 < gateways.count() => {
                eprintln!(
                    "loggate: {}: {} (UNAVAILABLE); trying the next gateway",
                    gateways.address(reached),
                    status.message()
                );
                next = reached + 1;
            }
            Err(status) => {
                return Err(Error::Refused {
                    what: "the record was not accepted",
                    status,
                })
            }
        }
    };
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
