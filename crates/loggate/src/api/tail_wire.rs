//! How Tail goes on the wire. A record is encoded once, however many
//! followers it goes to: the frame a follower queues holds the encoded
//! record as shared bytes, so a thousand followers of one 4 MiB record hold
//! one copy of it, not a thousand. tonic's generated server would encode a
//! `TailResponse` per follower, so Tail is served here by hand, the way the
//! generated code serves it, with a codec of its own. The codec is also
//! where a Tail request is bounded: filters and a token need a few hundred
//! bytes, and a larger request is refused with `RESOURCE_EXHAUSTED`.

use std::{pin::Pin, sync::Arc};

use bytes::{Buf, Bytes};
use futures::{future::BoxFuture, Stream};
use tonic::{
    body::Body,
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
    codegen::{http, Context, Poll, Service},
    server::{Grpc, ServerStreamingService},
    Request, Response, Status,
};

use super::Gateway;
use crate::proto::{codec::decode_error, v1 as pb};

/// The Tail method's HTTP/2 path.
pub const TAIL_PATH: &str = "/loggate.v1.LogGateway/Tail";

/// A Tail request larger than this is refused with `RESOURCE_EXHAUSTED`.
pub const MAX_TAIL_REQUEST_BYTES: usize = 64 * 1024;

/// What tonic buffers of a Tail request at most before the codec sees it;
/// beyond it tonic itself refuses the call (`OUT_OF_RANGE`, as for every
/// over-limit message it reads).
const TAIL_REQUEST_BUFFER_BYTES: usize = 1024 * 1024;

/// `TailResponse` as it is written: field for field the same message on the
/// wire (a set optional field encodes as the oneof member with its number,
/// and a message field as its encoded bytes), but the record is already
/// encoded. Exactly one of the first four fields is set.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TailFrame {
    // Named apart from the constructors below (prost derives a getter per
    // optional field); only the numbers matter on the wire.
    /// An encoded `LogRecord`.
    #[prost(bytes = "bytes", optional, tag = "1")]
    encoded_record: Option<Bytes>,
    #[prost(message, optional, tag = "2")]
    caught_up_event: Option<pb::CaughtUp>,
    #[prost(message, optional, tag = "3")]
    heartbeat_event: Option<pb::Heartbeat>,
    #[prost(message, optional, tag = "4")]
    gap_event: Option<pb::Gap>,
    #[prost(string, tag = "5")]
    resume_token: String,
}

impl TailFrame {
    pub fn record(encoded: Bytes, resume_token: String) -> TailFrame {
        TailFrame {
            encoded_record: Some(encoded),
            resume_token,
            ..TailFrame::default()
        }
    }

    pub fn caught_up() -> TailFrame {
        TailFrame {
            caught_up_event: Some(pb::CaughtUp {}),
            ..TailFrame::default()
        }
    }

    pub fn heartbeat(heartbeat: pb::Heartbeat) -> TailFrame {
        TailFrame {
            heartbeat_event: Some(heartbeat),
            ..TailFrame::default()
        }
    }

    pub fn gap(gap: pb::Gap) -> TailFrame {
        TailFrame {
            gap_event: Some(gap),
            ..TailFrame::default()
        }
    }
}

/// The responses one Tail call sends.
pub type TailFrames = Pin<Box<dyn Stream<Item = Result<TailFrame, Status>> + Send>>;

/// Serves the Tail method: decodes its request within bounds, runs
/// `api::tail`, writes its frames.
#[derive(Clone)]
pub struct TailService {
    gateway: Arc<Gateway>,
}

impl TailService {
    pub fn new(gateway: Arc<Gateway>) -> TailService {
        TailService { gateway }
    }
}

impl Service<http::Request<Body>> for TailService {
    type Response = http::Response<Body>;
    type Error = std::convert::Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let method = TailMethod(Arc::clone(&self.gateway));
        Box::pin(async move {
            let mut grpc = Grpc::new(TailCodec)
                .apply_max_message_size_config(Some(TAIL_REQUEST_BUFFER_BYTES), None);
            Ok(grpc.server_streaming(method, request).await)
        })
    }
}

struct TailMethod(Arc<Gateway>);

impl ServerStreamingService<pb::TailRequest> for TailMethod {
    type Response = TailFrame;
    type ResponseStream = TailFrames;
    type Future = BoxFuture<'static, Result<Response<TailFrames>, Status>>;

    fn call(&mut self, request: Request<pb::TailRequest>) -> Self::Future {
        let gateway = Arc::clone(&self.0);
        Box::pin(async move { super::tail::tail(&gateway, request).await })
    }
}

/// Reads a `TailRequest` of at most [`MAX_TAIL_REQUEST_BYTES`]; writes
/// [`TailFrame`]s.
#[derive(Debug, Clone, Copy, Default)]
struct TailCodec;

impl Codec for TailCodec {
    type Encode = TailFrame;
    type Decode = pb::TailRequest;
    type Encoder = FrameEncoder;
    type Decoder = RequestDecoder;

    fn encoder(&mut self) -> FrameEncoder {
        FrameEncoder
    }

    fn decoder(&mut self) -> RequestDecoder {
        RequestDecoder
    }
}

#[derive(Debug, Clone, Copy)]
struct FrameEncoder;

impl Encoder for FrameEncoder {
    type Item = TailFrame;
    type Error = Status;

    fn encode(&mut self, frame: TailFrame, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        // An EncodeBuf grows as needed, so encoding cannot run out of room.
        prost::Message::encode(&frame, buf)
            .map_err(|error| Status::internal(format!("encoding a Tail response: {error}")))
    }
}

#[derive(Debug, Clone, Copy)]
struct RequestDecoder;

impl Decoder for RequestDecoder {
    type Item = pb::TailRequest;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<pb::TailRequest>, Status> {
        let size = buf.remaining();
        if size > MAX_TAIL_REQUEST_BYTES {
            return Err(Status::resource_exhausted(format!(
                "a Tail request may be at most {MAX_TAIL_REQUEST_BYTES} bytes; this one is {size}"
            )));
        }
        prost::Message::decode(buf).map(Some).map_err(decode_error)
    }
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::*;

    fn as_response(frame: &TailFrame) -> pb::TailResponse {
        pb::TailResponse::decode(frame.encode_to_vec().as_slice()).expect("decodes")
    }

    #[test]
    fn every_frame_is_the_tail_response_it_stands_for() {
        use pb::tail_response::Event;
        let record = pb::LogRecord {
            service: "checkout".into(),
            message: "paid".into(),
            ..Default::default()
        };
        let frame = TailFrame::record(record.encode_to_vec().into(), "token".into());
        assert_eq!(
            as_response(&frame),
            pb::TailResponse {
                event: Some(Event::Record(record)),
                resume_token: "token".into(),
            }
        );
        let beat = pb::Heartbeat {
            time: Some(prost_types::Timestamp {
                seconds: 5,
                nanos: 6,
            }),
            head_time: None,
        };
        for (frame, event) in [
            (TailFrame::caught_up(), Event::CaughtUp(pb::CaughtUp {})),
            (TailFrame::heartbeat(beat), Event::Heartbeat(beat)),
            (
                TailFrame::gap(pb::Gap { reason: "r".into() }),
                Event::Gap(pb::Gap { reason: "r".into() }),
            ),
        ] {
            assert_eq!(
                as_response(&frame),
                pb::TailResponse {
                    event: Some(event),
                    resume_token: String::new(),
                }
            );
        }
    }

    #[test]
    fn an_empty_record_is_still_a_record() {
        // A record whose fields are all defaults encodes to no bytes; the
        // frame must still say it is a record.
        let frame = TailFrame::record(Bytes::new(), "t".into());
        assert_eq!(
            as_response(&frame).event,
            Some(pb::tail_response::Event::Record(pb::LogRecord::default()))
        );
    }
}
