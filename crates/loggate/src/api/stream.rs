//! `LogStream`: many pipelined requests on one call, each answered once its
//! records are confirmed (or with its own error), in order of confirmation.
//!
//! One task reads requests in order and hands each to the publisher on the
//! stream's own channel (so requests reach the broker in the order sent); a
//! task per request awaits its confirms and answers. A per-stream semaphore
//! bounds unanswered records: when it is exhausted the reader stops reading,
//! and HTTP/2 flow control pushes back on the client.

use std::sync::Arc;

use time::OffsetDateTime;
use tokio::{
    sync::{mpsc, OwnedSemaphorePermit, Semaphore},
    task::JoinSet,
    time::Instant,
};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};
use tracing::{debug, info_span, Instrument};

use super::log::{accept_batch, traceparent};
use super::{Gateway, LogStreamStream};
use crate::broker::{self, Confirms, Reservation};
use crate::ingest::{self, Delivered, Ingest};
use crate::proto::v1 as pb;
use crate::record::{Acceptance, Limits, TraceParent};
use crate::spool::{self, Appended};

/// Answers buffered for a client that is slow to read them.
const ANSWER_BUFFER: usize = 256;

pub(super) async fn log_stream(
    gateway: &Gateway,
    request: Request<Streaming<pb::LogStreamRequest>>,
) -> Result<Response<LogStreamStream>, Status> {
    let publisher = gateway.ingest.publisher();
    let producer = Producer {
        ingest: Arc::clone(&gateway.ingest),
        lane: publisher.lane(),
        instance: gateway.instance.clone(),
        limits: gateway.limits,
        max_batch: gateway.max_batch,
        traceparent: traceparent(request.metadata()),
        inflight: Arc::new(Semaphore::new(gateway.stream_inflight)),
        max_inflight: u32::try_from(gateway.stream_inflight).unwrap_or(u32::MAX),
        publish_timeout: publisher.timeout(),
        shutdown: gateway.shutdown.clone(),
    };
    let (tx, rx) = mpsc::channel(ANSWER_BUFFER);
    tokio::spawn(
        producer
            .run(request.into_inner(), tx)
            .instrument(info_span!("log_stream")),
    );
    Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
}

type Answers = mpsc::Sender<Result<pb::LogStreamResponse, Status>>;

/// One LogStream call's state.
struct Producer {
    ingest: Arc<Ingest>,
    /// The channel slot every request of this stream is published on.
    lane: usize,
    instance: String,
    limits: Limits,
    max_batch: usize,
    traceparent: Option<TraceParent>,
    /// One permit per record sent but not yet answered.
    inflight: Arc<Semaphore>,
    max_inflight: u32,
    publish_timeout: std::time::Duration,
    shutdown: CancellationToken,
}

impl Producer {
    async fn run(self, mut requests: Streaming<pb::LogStreamRequest>, answers: Answers) {
        let mut confirming = JoinSet::new();
        let ending = loop {
            // Reap finished answer tasks so the set does not grow.
            while confirming.try_join_next().is_some() {}
            let request = tokio::select! {
                () = answers.closed() => break None,
                () = self.shutdown.cancelled() => break Some(Status::unavailable("the gateway is shutting down")),
                request = requests.message() => request,
            };
            match request {
                Ok(Some(request)) => {
                    let admission = match self.admit(&request, &answers).await {
                        Ok(admission) => admission,
                        Err(Refused::ClientLeft) => break None,
                        // This request (and any in flight) gets no answer:
                        // the stream's status says why.
                        Err(Refused::ShuttingDown) => {
                            break Some(Status::unavailable("the gateway is shutting down"))
                        }
                    };
                    self.start(request, admission, &answers, &mut confirming)
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
        while confirming.join_next().await.is_some() {}
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
    ) -> Result<Admission, Refused> {
        let wanted = u32::try_from(request.records.len())
            .unwrap_or(u32::MAX)
            .min(self.max_inflight);
        let admission = async {
            let stream = Arc::clone(&self.inflight)
                .acquire_many_owned(wanted)
                .await
                .ok()?;
            let gateway = self.ingest.publisher().reserve(request.records.len()).await;
            Some(Admission { stream, gateway })
        };
        tokio::select! {
            admission = admission => admission.ok_or(Refused::ShuttingDown),
            () = answers.closed() => Err(Refused::ClientLeft),
            () = self.shutdown.cancelled() => Err(Refused::ShuttingDown),
        }
    }

    /// Validates and publishes one request, then leaves its confirms to a
    /// task that answers. Refusals are answered at once.
    async fn start(
        &self,
        request: pb::LogStreamRequest,
        admission: Admission,
        answers: &Answers,
        confirming: &mut JoinSet<()>,
    ) {
        let Admission { stream, gateway } = admission;
        let seq = request.seq;
        let acceptance = Acceptance {
            received_time: OffsetDateTime::now_utc(),
            gateway: &self.instance,
            traceparent: self.traceparent.as_ref(),
            limits: self.limits,
        };
        let records = match accept_batch(&acceptance, request.records, self.max_batch) {
            Ok(records) => records,
            Err(invalid) => {
                let _ = answers.send(Ok(refusal(seq, invalid.into()))).await;
                return;
            }
        };
        // Handed over here, in request order (to the stream's channel or to
        // the spool's queue); only the waiting happens in the task.
        let handed = match self.ingest.spool_first() {
            Some(spool) => Handed::Spool(spool.append(&records).await),
            None => {
                let deadline = Instant::now() + self.publish_timeout;
                Handed::Broker(
                    self.ingest
                        .publisher()
                        .send(self.lane, &records, gateway, deadline)
                        .await,
                )
            }
        };
        let ingest = Arc::clone(&self.ingest);
        let answers = answers.clone();
        confirming.spawn(async move {
            let delivered = match handed {
                Handed::Spool(appended) => match appended {
                    Ok(appended) => appended.durable().await,
                    Err(error) => Err(error),
                }
                .map(|()| Delivered::Spooled)
                .map_err(ingest::Error::from),
                Handed::Broker(sent) => {
                    let confirmed = match sent {
                        Ok(confirms) => confirms.wait().await,
                        Err(error) => Err(error),
                    };
                    ingest.settle(&records, confirmed).await
                }
            };
            let answer = match delivered {
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
enum Refused {
    ClientLeft,
    ShuttingDown,
}

/// Where a request's records were handed.
enum Handed {
    Broker(Result<Confirms, broker::Error>),
    Spool(Result<Appended, spool::Error>),
}

/// Room for one request: in this stream's bound and in the gateway's.
struct Admission {
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
