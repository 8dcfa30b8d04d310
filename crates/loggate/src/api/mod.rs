//! The gRPC services, kept thin: decode, validate at the edge, call the broker
//! layer, map errors (in `status`, and only there). No lapin types here.

mod auth;
mod log;
mod otlp;
mod quota;
mod status;
mod stream;
mod tail;
mod tail_wire;

use std::{num::NonZeroUsize, pin::Pin, sync::Arc, time::Duration};

use futures::Stream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

pub use auth::Authenticate;
pub use quota::{QuotaSettings, Rate};
pub use tail::{open as open_tail, TailEvent, TailEvents};
pub use tail_wire::{TailService, MAX_TAIL_REQUEST_BYTES, TAIL_PATH};

use crate::broker::StreamSource;
use crate::ingest::Ingest;
use crate::metrics::{self, Outcome, Rpc};
use crate::proto::v1 as pb;
use crate::record::Limits;
use crate::tail::{DecodeLimits, Hub};

/// What every RPC needs; cheap to share.
pub struct Gateway {
    /// Takes accepted records: to RabbitMQ, or to the spool.
    ingest: Arc<Ingest>,
    source: Arc<StreamSource>,
    /// The shared live consumer that live tails follow.
    hub: Arc<Hub>,
    /// This instance's name, stamped on every record (`gateway`).
    instance: String,
    calls: CallLimits,
    tails: TailSettings,
    /// One permit per open Tail (`--max-tails`).
    open_tails: Arc<tokio::sync::Semaphore>,
    /// What each principal may use: records/s and open tails.
    quotas: Arc<quota::Quotas>,
    /// Cancelled when the gateway shuts down: tails end with UNAVAILABLE.
    shutdown: CancellationToken,
}

/// How a gateway instance is set up.
pub struct GatewaySettings {
    /// This instance's name, stamped on every record it accepts.
    pub instance: String,
    pub calls: CallLimits,
    pub tails: TailSettings,
    pub quotas: QuotaSettings,
}

/// Bounds on the ingest calls (`Log`, `LogBatch`, `LogStream`).
#[derive(Debug, Clone, Copy)]
pub struct CallLimits {
    /// What one record may hold.
    pub record: Limits,
    /// Most records in one LogBatch call or LogStream request.
    pub max_batch: NonZeroUsize,
    /// Unconfirmed records one LogStream may have before it stops reading.
    pub stream_inflight: NonZeroUsize,
    /// Requests one LogStream may have read but not yet answered.
    pub stream_requests: NonZeroUsize,
}

/// How Tail calls are served.
#[derive(Debug, Clone)]
pub struct TailSettings {
    /// Responses buffered per Tail before the follower waits for the client.
    pub buffer: NonZeroUsize,
    /// Most Tail calls open at once.
    pub max_tails: NonZeroUsize,
    /// Records queued per live tail in the hub before it is detached.
    pub hub_queue: NonZeroUsize,
    /// How often a Tail gets a Heartbeat.
    pub heartbeat: Duration,
    /// How long a tail waits for the broker to come back before it ends.
    pub resume_wait: Duration,
    /// The bounds stream messages are read within.
    pub decode: DecodeLimits,
}

impl Gateway {
    pub fn new(
        ingest: Arc<Ingest>,
        source: Arc<StreamSource>,
        settings: GatewaySettings,
        shutdown: CancellationToken,
    ) -> Gateway {
        let GatewaySettings {
            instance,
            calls,
            tails,
            quotas,
        } = settings;
        Gateway {
            ingest,
            hub: Hub::new(Arc::clone(&source), tails.hub_queue, tails.decode),
            source,
            instance,
            calls,
            open_tails: Arc::new(tokio::sync::Semaphore::new(tails.max_tails.get())),
            tails,
            quotas: Arc::new(quota::Quotas::new(quotas)),
            shutdown,
        }
    }
}

impl Gateway {
    /// The shared live consumer: its rates feed the web page's chart.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }
}

type LogStreamStream = Pin<Box<dyn Stream<Item = Result<pb::LogStreamResponse, Status>> + Send>>;

/// What a unary ingest call's answer says became of its records (`spooled`
/// reads the response's flag).
fn outcome<T>(answer: &Result<Response<T>, Status>, spooled: impl Fn(&T) -> bool) -> Outcome {
    match answer {
        Ok(response) => Outcome::taken(spooled(response.get_ref())),
        Err(status) => Outcome::Refused(status.code()),
    }
}

#[tonic::async_trait]
impl pb::log_gateway_server::LogGateway for Gateway {
    async fn log(
        &self,
        request: Request<pb::LogRequest>,
    ) -> Result<Response<pb::LogResponse>, Status> {
        let answer = log::log(self, request).await;
        metrics::records(Rpc::Log, 1, outcome(&answer, |r| r.spooled));
        answer
    }

    async fn log_batch(
        &self,
        request: Request<pb::LogBatchRequest>,
    ) -> Result<Response<pb::LogBatchResponse>, Status> {
        let records = request.get_ref().records.len();
        let answer = log::log_batch(self, request).await;
        metrics::records(Rpc::LogBatch, records, outcome(&answer, |r| r.spooled));
        answer
    }

    type LogStreamStream = LogStreamStream;

    async fn log_stream(
        &self,
        request: Request<tonic::Streaming<pb::LogStreamRequest>>,
    ) -> Result<Response<Self::LogStreamStream>, Status> {
        stream::log_stream(self, request).await
    }

    type TailStream = futures::stream::Empty<Result<pb::TailResponse, Status>>;

    /// Never called: the server routes Tail to [`TailService`], which
    /// encodes each record once for all its followers (see `tail_wire`).
    async fn tail(
        &self,
        _: Request<pb::TailRequest>,
    ) -> Result<Response<Self::TailStream>, Status> {
        Err(Status::internal(
            "Tail is served by api::TailService, not the generated server",
        ))
    }
}
