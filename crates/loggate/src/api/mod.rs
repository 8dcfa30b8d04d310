//! The gRPC services, kept thin: decode, validate at the edge, call the broker
//! layer, map errors (in `status`, and only there). No lapin types here.

mod log;
mod status;
mod stream;
mod tail;

use std::{pin::Pin, sync::Arc};

use futures::Stream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::broker::StreamSource;
use crate::ingest::Ingest;
use crate::proto::v1 as pb;
use crate::record::Limits;
use crate::tail::Hub;

/// What every RPC needs; cheap to share.
pub struct Gateway {
    /// Publishes accepted records, or spools them.
    ingest: Arc<Ingest>,
    source: Arc<StreamSource>,
    /// The shared live consumer that live tails follow.
    hub: Arc<Hub>,
    /// This instance's name, stamped on every record (`gateway`).
    instance: String,
    limits: Limits,
    /// Most records in one LogBatch call.
    max_batch: usize,
    /// Responses buffered per Tail before the follower waits for the client.
    tail_buffer: usize,
    /// Unconfirmed records one LogStream may have before it stops reading.
    stream_inflight: usize,
    /// How often a Tail gets a Heartbeat.
    tail_heartbeat: std::time::Duration,
    /// How long a tail waits for the broker to come back before it ends.
    tail_resume_wait: std::time::Duration,
    /// One permit per open Tail (`--max-tails`).
    tails: Arc<tokio::sync::Semaphore>,
    max_tails: usize,
    /// Cancelled when the gateway shuts down: tails end with UNAVAILABLE.
    shutdown: CancellationToken,
}

/// How a gateway instance is set up.
pub struct GatewaySettings {
    pub instance: String,
    pub limits: Limits,
    pub max_batch: usize,
    pub tail_buffer: usize,
    pub stream_inflight: usize,
    pub max_tails: usize,
    /// Records queued per live tail in the hub before it is detached.
    pub tail_hub_queue: usize,
    pub tail_heartbeat: std::time::Duration,
    pub tail_resume_wait: std::time::Duration,
}

impl Gateway {
    pub fn new(
        ingest: Arc<Ingest>,
        source: Arc<StreamSource>,
        settings: GatewaySettings,
        shutdown: CancellationToken,
    ) -> Gateway {
        Gateway {
            ingest,
            hub: Hub::new(Arc::clone(&source), settings.tail_hub_queue),
            source,
            instance: settings.instance,
            limits: settings.limits,
            max_batch: settings.max_batch,
            tail_buffer: settings.tail_buffer.max(1),
            stream_inflight: settings.stream_inflight.max(1),
            tails: Arc::new(tokio::sync::Semaphore::new(settings.max_tails.max(1))),
            max_tails: settings.max_tails.max(1),
            tail_heartbeat: settings.tail_heartbeat,
            tail_resume_wait: settings.tail_resume_wait,
            shutdown,
        }
    }
}

type TailStream = Pin<Box<dyn Stream<Item = Result<pb::TailResponse, Status>> + Send>>;
type LogStreamStream = Pin<Box<dyn Stream<Item = Result<pb::LogStreamResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::log_gateway_server::LogGateway for Gateway {
    async fn log(
        &self,
        request: Request<pb::LogRequest>,
    ) -> Result<Response<pb::LogResponse>, Status> {
        log::log(self, request).await
    }

    async fn log_batch(
        &self,
        request: Request<pb::LogBatchRequest>,
    ) -> Result<Response<pb::LogBatchResponse>, Status> {
        log::log_batch(self, request).await
    }

    type LogStreamStream = LogStreamStream;

    async fn log_stream(
        &self,
        request: Request<tonic::Streaming<pb::LogStreamRequest>>,
    ) -> Result<Response<Self::LogStreamStream>, Status> {
        stream::log_stream(self, request).await
    }

    type TailStream = TailStream;

    async fn tail(
        &self,
        request: Request<pb::TailRequest>,
    ) -> Result<Response<Self::TailStream>, Status> {
        tail::tail(self, request).await
    }
}
