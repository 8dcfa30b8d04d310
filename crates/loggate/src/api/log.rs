//! `Log` and `LogBatch`: validate everything, then publish with confirms.

use time::OffsetDateTime;
use tonic::{metadata::MetadataMap, Request, Response, Status};

use super::auth::caller;
use super::Gateway;
use crate::auth::{Caller, Denied};
use crate::proto::v1 as pb;
use crate::record::{Acceptance, Invalid, Record, TraceParent};

pub(super) async fn log(
    gateway: &Gateway,
    request: Request<pb::LogRequest>,
) -> Result<Response<pb::LogResponse>, Status> {
    let caller = caller(&request)?;
    let traceparent = traceparent(request.metadata());
    let input = request
        .into_inner()
        .record
        .ok_or_else(|| Invalid::new("record", "is required"))?;
    let record = acceptance(gateway, &caller, traceparent.as_ref())
        .accept(input)
        .map_err(|e| e.within("record"))?;
    permitted(&caller, &record, || "record".to_owned())?;
    gateway.quotas.spend(&caller, 1)?;
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
    let caller = caller(&request)?;
    let traceparent = traceparent(request.metadata());
    let inputs = request.into_inner().records;
    let records = accept_batch(
        &acceptance(gateway, &caller, traceparent.as_ref()),
        &caller,
        inputs,
        gateway.calls.max_batch.get(),
    )?;
    gateway.quotas.spend(&caller, records.len())?;
    let delivered = gateway.ingest.deliver(&records).await?;
    Ok(Response::new(pb::LogBatchResponse {
        ids: records.into_iter().map(|r| r.id).collect(),
        spooled: delivered.spooled(),
    }))
}

/// Validates every record of a batch, and checks the caller may write each,
/// before any is published; the error names the record's index.
pub(super) fn accept_batch(
    acceptance: &Acceptance<'_>,
    caller: &Caller,
    inputs: Vec<pb::LogRecord>,
    max_batch: usize,
) -> Result<Vec<Record>, Status> {
    if inputs.len() > max_batch {
        return Err(Invalid::new(
            "records",
            format_args!(
                "{} records, more than the limit of {max_batch} (--max-batch)",
                inputs.len()
            ),
        )
        .into());
    }
    // Sized once: collecting through `Result` would grow it from nothing.
    let mut records = Vec::with_capacity(inputs.len());
    for (i, input) in inputs.into_iter().enumerate() {
        // The path is only written for an error: per record it cost as
        // much as validating the record.
        let at = || format!("records[{i}]");
        let record = acceptance.accept(input).map_err(|e| e.within(&at()))?;
        permitted(caller, &record, at)?;
        records.push(record);
    }
    Ok(records)
}

/// PERMISSION_DENIED unless the caller's `log` scope covers the record's service.
/// `at` names where the record sits in the request (`records[3]`).
pub(super) fn permitted(
    caller: &Caller,
    record: &Record,
    at: impl FnOnce() -> String,
) -> Result<(), Denied> {
    if caller.may_log(&record.service) {
        Ok(())
    } else {
        Err(Denied::Log {
            field: format!("{}.service", at()),
            principal: caller.name().to_owned(),
            service: record.service.clone(),
        })
    }
}

pub(super) fn acceptance<'a>(
    gateway: &'a Gateway,
    caller: &'a Caller,
    traceparent: Option<&'a TraceParent>,
) -> Acceptance<'a> {
    Acceptance {
        received_time: OffsetDateTime::now_utc(),
        gateway: &gateway.instance,
        principal: caller.name(),
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
