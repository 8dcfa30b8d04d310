//! `Tail`: one stream consumer per follower, reading the history stream from
//! its live end, filtering in the gateway, sending records in stream order.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};
use tracing::{debug, info_span, warn, Instrument};

use super::{Gateway, TailStream};
use crate::broker::{StreamMessage, StreamReader, StreamStart};
use crate::proto::v1 as pb;
use crate::record::{Filter, Record};

/// How long the closing status may wait for room in a full response buffer.
const FINAL_STATUS_WAIT: Duration = Duration::from_secs(1);

pub(super) async fn tail(
    gateway: &Gateway,
    request: Request<pb::TailRequest>,
) -> Result<Response<TailStream>, Status> {
    let filter = Filter::from_request(request.get_ref())?;
    let reader = gateway.source.open(StreamStart::Next).await?;
    let (tx, rx) = mpsc::channel(gateway.tail_buffer);
    let follower = follow(reader, filter, tx, gateway.shutdown.clone());
    tokio::spawn(follower.instrument(info_span!("tail")));
    Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
}

type Sender = mpsc::Sender<Result<pb::TailResponse, Status>>;

/// Forwards matching records until the client leaves (no status to send), the
/// gateway shuts down or the broker fails (UNAVAILABLE). Always closes the
/// reader, so no consumer is left behind on the broker.
async fn follow(mut reader: StreamReader, filter: Filter, tx: Sender, shutdown: CancellationToken) {
    debug!("tail started");
    let shutting_down = || Some(Status::unavailable("the gateway is shutting down"));
    let ending = 'follow: loop {
        let message = tokio::select! {
            () = shutdown.cancelled() => break shutting_down(),
            () = tx.closed() => break None,
            next = reader.next() => match next {
                Ok(Some(message)) => message,
                Ok(None) => break Some(Status::unavailable("RabbitMQ cancelled the history stream consumer")),
                Err(error) => break Some(Status::from(error)),
            },
        };
        for record in decode(&message).into_iter().filter(|r| filter.matches(r)) {
            let response = pb::TailResponse {
                event: Some(pb::tail_response::Event::Record(record.into())),
            };
            tokio::select! {
                () = shutdown.cancelled() => break 'follow shutting_down(),
                sent = tx.send(Ok(response)) => if sent.is_err() { break 'follow None },
            }
        }
        // Acks are stream credit: ack only once the records were handed to gRPC.
        if let Err(error) = reader.ack(&message).await {
            break Some(Status::from(error));
        }
    };
    reader.close().await;
    if let Some(status) = ending {
        let _ = tx.send_timeout(Err(status), FINAL_STATUS_WAIT).await;
    }
    debug!("tail ended");
}

/// The loggate records in a message (one, or several when packed); anything
/// else someone published to the exchange is skipped and logged: the broker
/// is input too, and must not crash a tail.
fn decode(message: &StreamMessage) -> Vec<Record> {
    Record::from_message(message.content_type.as_deref(), &message.body)
        .into_iter()
        .filter_map(|decoded| match decoded {
            Ok(record) => Some(record),
            Err(error) => {
                warn!(offset = ?message.offset, content_type = ?message.content_type, %error, "skipping a message that is not a loggate record");
                None
            }
        })
        .collect()
}
