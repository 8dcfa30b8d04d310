//! `Log` and `LogBatch`: validate everything, then publish with confirms.

use time::OffsetDateTime;
use tonic::{metadata::MetadataMap, Request, Response, Status};

use super::Gateway;
use crate::proto::v1 as pb;
use crate::record::{Acceptance, Invalid, Record, TraceParent};

pub(super) async fn log(
    gateway: &Gateway,
    request: Request<pb::LogRequest>,
) -> Result<Response<pb::LogResponse>, Status> {
    let traceparent = traceparent(request.metadata());
    let input = request
        .into_inner()
        .record
        .ok_or_else(|| Invalid::new("record", "is required"))?;
    let record = acceptance(gateway, traceparent.as_ref())
        .accept(input)
        .map_err(|e| e.within("record"))?;
    let delivered = gateway
        .ingest
        .deliver(std::slice::from_ref(&record))
        .await?;
    Ok(Response::new(pb::LogResponse {
        id: record.id,
        spooled: delivered.spooled(),
    }))
}

pub(super) async fn log_batch(
    gateway: &Gateway,
    request: Request<pb::LogBatchRequest>,
) -> Result<Response<pb::LogBatchResponse>, Status> {
    let traceparent = traceparent(request.metadata());
    let inputs = request.into_inner().records;
    let records = accept_batch(
        &acceptance(gateway, traceparent.as_ref()),
        inputs,
        gateway.calls.max_batch.get(),
    )?;
    let delivered = gateway.ingest.deliver(&records).await?;
    Ok(Response::new(pb::LogBatchResponse {
        ids: records.into_iter().map(|r| r.id).collect(),
        spooled: delivered.spooled(),
    }))
}

/// Validates every record of a batch before any is published; the error names
/// the record's index.
pub(super) fn accept_batch(
    acceptance: &Acceptance<'_>,
    inputs: Vec<pb::LogRecord>,
    max_batch: usize,
) -> Result<Vec<Record>, Invalid> {
    if inputs.len() > max_batch {
        return Err(Invalid::new(
            "records",
            format_args!(
                "{} records, more than the limit of {max_batch} (--max-batch)",
                inputs.len()
            ),
        ));
    }
    inputs
        .into_iter()
        .enumerate()
        .map(|(i, input)| {
            acceptance
                .accept(input)
                .map_err(|e| e.within(&format!("records[{i}]")))
        })
        .collect()
}

pub(super) fn acceptance<'a>(
    gateway: &'a Gateway,
    traceparent: Option<&'a TraceParent>,
) -> Acceptance<'a> {
    Acceptance {
        received_time: OffsetDateTime::now_utc(),
        gateway: &gateway.instance,
        traceparent,
        limits: gateway.calls.record,
    }
}

/// The call's W3C `traceparent` metadata, if present and valid.
pub(super) fn traceparent(metadata: &MetadataMap) -> Option<TraceParent> {
    metadata
        .get("traceparent")
        .and_then(|value| value.to_str().ok())
        .and_then(TraceParent::parse)
}
