//! `LogStream`: many pipelined requests on one call, each answered once its
//! records are confirmed (or with its own error), in order of confirmation.
//!
//! One task reads requests in order, validates each, and hands it over to
//! `ingest` in the stream's own sequence (so requests reach the broker, or
//! the spool, in the order sent); a task per request awaits the outcome and
//! answers. Every request read holds a place until its answer is queued:
//! one of `--stream-requests` places, plus one `--stream-inflight` permit
//! per record. When either runs out (a client that does not read its
//! answers runs out of both) the reader stops reading, and HTTP/2 flow
//! control pushes back on the client. Validation comes first, so a request
//! that will be refused never waits for, or holds, room meant for records.

use std::sync::Arc;

use time::OffsetDateTime;
use tokio::{
    sync::{mpsc, OwnedSemaphorePermit, Semaphore},
    task::JoinSet,
};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Code, Request, Response, Status, Streaming};
use tracing::{debug, info_span, Instrument};

use super::auth::caller;
use super::log::{accept_batch, traceparent};
use super::quota::Quotas;
use super::{Gateway, LogStreamStream};
use crate::auth::Caller;
use crate::ingest::{Delivered, Ingest, Reservation, Sequence};
use crate::metrics::{self, Outcome, Rpc};
use crate::proto::v1 as pb;
use crate::record::{Acceptance, Limits, Record, TraceParent};

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
        quotas: Arc::clone(&gateway.quotas),
        limits: gateway.calls.record,
        max_batch: gateway.calls.max_batch.get(),
        traceparent: traceparent(request.metadata()),
        unanswered: Arc::new(Semaphore::new(gateway.calls.stream_requests.get())),
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
    /// The caller's records/s, spent per request once it is valid.
    quotas: Arc<Quotas>,
    limits: Limits,
    max_batch: usize,
    traceparent: Option<TraceParent>,
    /// One permit per request read but not yet answered (`--stream-requests`),
    /// whatever it holds: bounds the answer tasks of a stream, empty requests
    /// and refusals included.
    unanswered: Arc<Semaphore>,
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
                    let seq = request.seq;
                    let sent = request.records.len();
                    // Validated before it waits for room: a request that
                    // will be refused takes no record permit.
                    let accepted = self.accept(request);
                    if let Err(refused) = &accepted {
                        metrics::records(Rpc::LogStream, sent, Outcome::Refused(refused.code()));
                    }
                    let wanted = accepted.as_ref().map_or(0, Vec::len);
                    let permits = match self.admit(wanted, &answers).await {
                        Ok(permits) => permits,
                        Err(NotAdmitted::ClientLeft) => {
                            if accepted.is_ok() {
                                metrics::records(
                                    Rpc::LogStream,
                                    wanted,
                                    Outcome::Refused(Code::Cancelled),
                                );
                            }
                            break None;
                        }
                        // This request (and any in flight) gets no answer:
                        // the stream's status says why.
                        Err(NotAdmitted::ShuttingDown) => {
                            if accepted.is_ok() {
                                metrics::records(
                                    Rpc::LogStream,
                                    wanted,
                                    Outcome::Refused(Code::Unavailable),
                                );
                            }
                            break Some(Status::unavailable("the gateway is shutting down"));
                        }
                    };
                    self.hand_over(seq, accepted, permits, &answers, &mut answering)
                        .await;
                }
                // The client half-closed: answer what is in flight, then end OK.
                Ok(None) => break None,
                // A request that does not decode (or a broken stream) ends
                // the call with its status; a client that left cannot read it.
                Err(status) => {
                    debug!(%status, "the client's request stream failed");
                    break Some(status);
                }
            }
        };
        // Every request taken is answered before the stream ends.
        while answering.join_next().await.is_some() {}
        if let Some(status) = ending {
            let _ = answers.send(Err(status)).await;
        }
    }

    /// Validates and stamps one request's records, checks the caller may
    /// write each (the refusal names the field) and spends them from the
    /// caller's rate.
    fn accept(&self, request: pb::LogStreamRequest) -> Result<Vec<Record>, Status> {
        // A stream outlives reloads of the auth file: each request is checked
        // against the principals in force now, not when the stream opened.
        self.caller.still_admitted()?;
        let acceptance = Acceptance {
            received_time: OffsetDateTime::now_utc(),
            gateway: &self.instance,
            principal: self.caller.name(),
            traceparent: self.traceparent.as_ref(),
            limits: self.limits,
        };
        let records = accept_batch(&acceptance, &self.caller, request.records, self.max_batch)?;
        self.quotas.spend(&self.caller, records.len())?;
        Ok(records)
    }

    /// Waits until one more request, and its `records`, fit in the stream's
    /// bounds and the records in the gateway's, unless the client leaves or
    /// the gateway stops meanwhile.
    async fn admit(&self, records: usize, answers: &Answers) -> Result<Admitted, NotAdmitted> {
        let wanted = u32::try_from(records)
            .unwrap_or(u32::MAX)
            .min(self.max_inflight);
        let permits = async {
            let request = Arc::clone(&self.unanswered).acquire_owned().await.ok()?;
            let stream = Arc::clone(&self.inflight)
                .acquire_many_owned(wanted)
                .await
                .ok()?;
            // Nothing to publish, nothing to reserve under --max-inflight.
            let gateway = match records {
                0 => None,
                n => Some(self.ingest.reserve(n).await),
            };
            Some(Admitted {
                _request: request,
                _stream: stream,
                gateway,
            })
        };
        tokio::select! {
            permits = permits => permits.ok_or(NotAdmitted::ShuttingDown),
            () = answers.closed() => Err(NotAdmitted::ClientLeft),
            () = self.shutdown.cancelled() => Err(NotAdmitted::ShuttingDown),
        }
    }

    /// Hands an accepted request's records over, in stream order; a task
    /// awaits the outcome and answers, holding the request's permits until
    /// its answer is queued. Refusals and empty requests are answered by a
    /// task too, so they count against the same bounds.
    async fn hand_over(
        &self,
        seq: u64,
        accepted: Result<Vec<Record>, Status>,
        mut permits: Admitted,
        answers: &Answers,
        answering: &mut JoinSet<()>,
    ) {
        let answers = answers.clone();
        let records = match accepted {
            Ok(records) => records,
            Err(refused) => {
                answering.spawn(async move {
                    let _ = answers.send(Ok(refusal(seq, refused))).await;
                    drop(permits);
                });
                return;
            }
        };
        // Handed over here, in request order; only the waiting happens in the task.
        let pending = match permits.gateway.take() {
            Some(reservation) => Some(
                self.ingest
                    .hand_over(self.sequence, &records, reservation)
                    .await,
            ),
            None => None,
        };
        answering.spawn(async move {
            let count = records.len();
            let settled = match pending {
                Some(pending) => pending.settle(&records).await,
                None => Ok(Delivered::Confirmed),
            };
            let answer = match settled {
                Ok(delivered) => pb::LogStreamResponse {
                    seq,
                    ids: records.into_iter().map(|r| r.id).collect(),
                    error: None,
                    spooled: delivered.spooled(),
                },
                Err(error) => refusal(seq, error.into()),
            };
            metrics::records(Rpc::LogStream, count, outcome(&answer));
            let _ = answers.send(Ok(answer)).await;
            // Held until answered: unanswered requests and records count
            // against the stream's bounds.
            drop(permits);
        });
    }
}

/// Why a request read from the stream was not admitted.
enum NotAdmitted {
    ClientLeft,
    ShuttingDown,
}

/// Room for one request: a place among the stream's unanswered requests
/// (`--stream-requests`), its records in this stream's bound
/// (`--stream-inflight`) and, until handed over, in the gateway's
/// (`--max-inflight`).
struct Admitted {
    _request: OwnedSemaphorePermit,
    _stream: OwnedSemaphorePermit,
    /// None once handed over (the records' confirms carry it from then on),
    /// or when there is nothing to publish.
    gateway: Option<Reservation>,
}

/// What an answer says became of its request's records.
fn outcome(answer: &pb::LogStreamResponse) -> Outcome {
    match &answer.error {
        Some(error) => Outcome::Refused(Code::from_i32(error.code)),
        None => Outcome::taken(answer.spooled),
    }
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
