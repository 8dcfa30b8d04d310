//! OTLP's `LogsService/Export`: the records of an OTLP/gRPC logs export,
//! mapped by `record::otlp`, then taken exactly like a LogBatch's (the
//! caller's `log` scope and rate, `--max-batch`, confirmed or spooled
//! before the answer). Records that cannot be accepted are left out and
//! counted in the answer's partial success; the rest are published.

use tonic::{Request, Response, Status};
use tracing::debug;

use super::auth::caller;
use super::log::{acceptance, permitted};
use super::Gateway;
use crate::ingest::Delivered;
use crate::metrics::{self, Outcome, Rpc};
use crate::proto::otlp::collector::{
    logs_service_server::LogsService, ExportLogsPartialSuccess, ExportLogsServiceRequest,
    ExportLogsServiceResponse,
};
use crate::record::{otlp, Invalid};

#[tonic::async_trait]
impl LogsService for Gateway {
    async fn export(
        &self,
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        let count = otlp::count(request.get_ref());
        match export(self, request).await {
            Ok(exported) => {
                let outcome = Outcome::taken(exported.delivered == Some(Delivered::Spooled));
                metrics::records(Rpc::OtlpExport, exported.accepted, outcome);
                metrics::otlp_records_rejected(exported.rejected);
                Ok(Response::new(exported.response))
            }
            Err(status) => {
                metrics::records(Rpc::OtlpExport, count, Outcome::Refused(status.code()));
                Err(status)
            }
        }
    }
}

/// What became of an export's records.
struct Exported {
    response: ExportLogsServiceResponse,
    accepted: usize,
    rejected: usize,
    /// `None` when no record was accepted (nothing was delivered).
    delivered: Option<Delivered>,
}

async fn export(
    gateway: &Gateway,
    request: Request<ExportLogsServiceRequest>,
) -> Result<Exported, Status> {
    let caller = caller(&request)?;
    let request = request.into_inner();
    let count = otlp::count(&request);
    let max_batch = gateway.calls.max_batch.get();
    if count > max_batch {
        return Err(Invalid::new(
            "resource_logs",
            format_args!("{count} log records, more than the limit of {max_batch} (--max-batch)"),
        )
        .into());
    }
    // The call's own traceparent is the exporter's, not its records': it
    // is not stamped on them.
    let mapped = otlp::accept(&acceptance(gateway, &caller, None), request);
    for (record, place) in mapped.records.iter().zip(&mapped.places) {
        permitted(&caller, record, || place.to_string())?;
    }
    gateway.quotas.spend(&caller, mapped.records.len())?;
    let delivered = if mapped.records.is_empty() {
        None
    } else {
        Some(gateway.ingest.deliver(&mapped.records).await?)
    };
    let partial_success = (mapped.rejected > 0).then(|| {
        let error_message = mapped.rejection_message();
        debug!(rejected = mapped.rejected, accepted = mapped.records.len(), reason = %error_message, "OTLP records rejected");
        ExportLogsPartialSuccess {
            rejected_log_records: i64::try_from(mapped.rejected).unwrap_or(i64::MAX),
            error_message,
        }
    });
    Ok(Exported {
        response: ExportLogsServiceResponse { partial_success },
        accepted: mapped.records.len(),
        rejected: mapped.rejected,
        delivered,
    })
}
