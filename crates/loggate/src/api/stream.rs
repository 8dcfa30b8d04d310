//! `LogStream`: many pipelined requests on one call, each answered once its
//! records are confirmed (or with its own error), in order of confirmation.
//!
//! One task reads requests in order and hands each over to `ingest` in the
//! stream's own sequence (so requests reach the broker, or the spool, in the
//! order sent); a task per request awaits the outcome and answers. A per-stream semaphore
//! bounds unanswered records: when it is exhausted the reader stops reading,
//! and HTTP/2 flow control pushes back on the client.

use std::sync::Arc;

use time::OffsetDateTime;
use tokio::{
    sync::{mpsc, OwnedSemaphorePermit, Semaphore},
    task::JoinSet,
};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info_span, Instrument};

use super::auth::caller;
use super::log::{accept_batch, traceparent};
use super::{Gateway, LogStreamStream};
use crate::auth::Caller;
use crate::ingest::{Ingest, Reservation, Sequence};
use crate::proto::v1 as pb;
use crate::record::{Acceptance, Limits, TraceParent};

/// Answers buffered for a client that is slow to read them.
const ANSWER_BUFFER: usize = 256;

pub(super) async fn log_stream(
    gateway: &Gateway,
    request: Request<Streaming<pb::LogStreamRequest>>,
) -> Result<Response<LogStreamStream>, Status> {
    let caller = caller(&request)?;
    let stream_inflight = gateway.calls.stream_inflight.get();
    let call = StreamCall {
        ingest: Arc::clone(&gateway.ingest),
        sequence: gateway.ingest.sequence(),
        instance: gateway.instance.clone(),
        caller,
        limits: gateway.calls.record,
        max_batch: gateway.calls.max_batch.get(),
        traceparent: traceparent(request.metadata()),
        inflight: Arc::new(Semaphore::new(stream_inflight)),
        max_inflight: u32::try_from(stream_inflight).unwrap_or(u32::MAX),
        shutdown: gateway.shutdown.clone(),
    };
    let (tx, rx) = mpsc::channel(ANSWER_BUFFER);
    tokio::spawn(
        call.run(request.into_inner(), tx)
            .instrument(info_span!("log_stream")),
    );
    Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
}

type Answers = mpsc::Sender<Result<pb::LogStreamResponse, Status>>;

/// One LogStream call's state.
struct StreamCall {
    ingest: Arc<Ingest>,
    /// Every request of this stream is handed over in this order.
    sequence: Sequence,
    instance: String,
    /// Who is calling: stamped on the records, and what they may write.
    caller: Caller,
    limits: Limits,
    max_batch: usize,
    traceparent: Option<TraceParent>,
    /// One permit per record sent but not yet answered.
    inflight: Arc<Semaphore>,
    /// All of `inflight`'s permits: the most one request takes (a request
    /// larger than the whole bound takes all of it rather than wait forever).
    max_inflight: u32,
    shutdown: CancellationToken,
}

impl StreamCall {
    async fn run(self, mut requests: Streaming<pb::LogStreamRequest>, answers: Answers) {
        let mut answering = JoinSet::new();
        let ending = loop {
            // Reap finished answer tasks so the set does not grow.
            while answering.try_join_next().is_some() {}
            let request = tokio::select! {
                () = answers.closed() => break None,
                () = self.shutdown.cancelled() => break Some(Status::unavailable("the gateway is shutting down")),
                request = requests.message() => request,
            };
            match request {
                Ok(Some(request)) => {
                    let permits = match self.admit(&request, &answers).await {
                        Ok(permits) => permits,
                        Err(NotAdmitted::ClientLeft) => break None,
                        // This request (and any in flight) gets no answer:
                        // the stream's status says why.
                        Err(NotAdmitted::ShuttingDown) => {
                            break Some(Status::unavailable("the gateway is shutting down"))
                        }
                    };
                    self.hand_over(request, permits, &answers, &mut answering)
                        .await;
                }
                // The client half-closed: answer what is in flight, then end OK.
                Ok(None) => break None,
                Err(status) => {
                    debug!(%status, "the client's request stream failed");
                    break None;
                }
            }
        };
        // Every request taken is answered before the stream ends.
        while answering.join_next().await.is_some() {}
        if let Some(status) = ending {
            let _ = answers.send(Err(status)).await;
        }
    }

    /// Waits until this request's records fit in the stream's bound and in the
    /// gateway's, unless the client leaves or the gateway stops meanwhile.
    async fn admit(
        &self,
        request: &pb::LogStreamRequest,
        answers: &Answers,
    ) -> Result<InflightPermits, NotAdmitted> {
        let wanted = u32::try_from(request.records.len())
            .unwrap_or(u32::MAX)
            .min(self.max_inflight);
        let permits = async {
            let stream = Arc::clone(&self.inflight)
                .acquire_many_owned(wanted)
                .await
                .ok()?;
            let gateway = self.ingest.reserve(request.records.len()).await;
            Some(InflightPermits { stream, gateway })
        };
        tokio::select! {
            permits = permits => permits.ok_or(NotAdmitted::ShuttingDown),
            () = answers.closed() => Err(NotAdmitted::ClientLeft),
            () = self.shutdown.cancelled() => Err(NotAdmitted::ShuttingDown),
        }
    }

    /// Validates one request and hands its records over, in stream order;
    /// a task awaits the outcome and answers. Refusals are answered at once.
    async fn hand_over(
        &self,
        request: pb::LogStreamRequest,
        permits: InflightPermits,
        answers: &Answers,
        answering: &mut JoinSet<()>,
    ) {
        let InflightPermits { stream, gateway } = permits;
        let seq = request.seq;
        let acceptance = Acceptance {
            received_time: OffsetDateTime::now_utc(),
            gateway: &self.instance,
            principal: self.caller.name(),
            traceparent: self.traceparent.as_ref(),
            limits: self.limits,
        };
        let records = match accept_batch(&acceptance, &self.caller, request.records, self.max_batch)
        {
            Ok(records) => records,
            Err(refused) => {
                let _ = answers.send(Ok(refusal(seq, refused))).await;
                return;
            }
        };
        // Handed over here, in request order; only the waiting happens in the task.
        let pending = self
            .ingest
            .hand_over(self.sequence, &records, gateway)
            .await;
        let answers = answers.clone();
        answering.spawn(async move {
            let answer = match pending.settle(&records).await {
                Ok(delivered) => pb::LogStreamResponse {
                    seq,
                    ids: records.into_iter().map(|r| r.id).collect(),
                    error: None,
                    spooled: delivered.spooled(),
                },
                Err(error) => refusal(seq, error.into()),
            };
            let _ = answers.send(Ok(answer)).await;
            // Held until answered: unanswered records count against the bound.
            drop(stream);
        });
    }
}

/// Why a request read from the stream was not admitted.
enum NotAdmitted {
    ClientLeft,
    ShuttingDown,
}

/// Room for one request's records: in this stream's bound
/// (`--stream-inflight`) and in the gateway's (`--max-inflight`).
struct InflightPermits {
    stream: OwnedSemaphorePermit,
    gateway: Reservation,
}

fn refusal(seq: u64, status: Status) -> pb::LogStreamResponse {
    pb::LogStreamResponse {
        seq,
        ids: Vec::new(),
        error: Some(pb::CallError {
            code: status.code() as i32,
            message: status.message().to_owned(),
        }),
        spooled: false,
    }
}
