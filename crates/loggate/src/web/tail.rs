//! `GET /api/tail`: a Tail as Server-Sent Events.

use axum::{
    body::Body,
    extract::State,
    http::{header, HeaderMap, HeaderValue, Uri},
    response::{IntoResponse as _, Response},
};
use bytes::BytesMut;
use tracing::debug;

use super::{query, sse, Refusal, Web, WebEvent};
use crate::api::{open_tail, TailEvents};

/// Events written per chunk at most: a burst goes out in a few writes, not
/// one per record, and a chunk stays small.
const EVENTS_PER_CHUNK: usize = 256;

/// A quiet stream gets a comment this often, whatever `--tail-heartbeat`
/// says: the page takes 45 s of silence for a dead connection, and proxies
/// close idle ones.
const KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(15);

pub(super) async fn tail(State(web): State<Web>, uri: Uri, headers: HeaderMap) -> Response {
    let (gateway, caller) = match web.admit(&headers) {
        Ok(admitted) => admitted,
        Err(refused) => return refused.into_response(),
    };
    let last_event_id = match headers.get("last-event-id").map(HeaderValue::to_str) {
        None => None,
        Some(Ok(id)) => Some(id),
        Some(Err(_)) => {
            return Refusal::bad_request("Last-Event-ID: not a resume token (not visible ASCII)")
                .into_response()
        }
    };
    let request = match query::tail_request(uri.query().unwrap_or(""), last_event_id) {
        Ok(request) => request,
        Err(invalid) => return Refusal::bad_request(invalid.to_string()).into_response(),
    };
    let events = match open_tail::<WebEvent>(&gateway, caller, request).await {
        Ok(events) => events,
        Err(status) => return Refusal::from(&status).into_response(),
    };
    let mut response = Response::new(Body::from_stream(stream(events)));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Proxies that buffer responses (nginx) would hold records back.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

/// The body: the preamble, then every event the follower sends, as many at
/// a time as are ready. The follower ends when the client leaves (hyper
/// drops the body, and with it the receiver).
fn stream(
    events: TailEvents<WebEvent>,
) -> impl futures::Stream<Item = Result<bytes::Bytes, std::convert::Infallible>> {
    let first = futures::stream::once(async { Ok(bytes::Bytes::from_static(sse::PREAMBLE)) });
    let rest = futures::stream::unfold(Some(events), |events| async move {
        let mut events = events?;
        let mut batch = Vec::with_capacity(EVENTS_PER_CHUNK);
        // recv_many is cancel-safe: a quiet spell loses nothing.
        match tokio::time::timeout(KEEP_ALIVE, events.recv_many(&mut batch, EVENTS_PER_CHUNK)).await
        {
            Ok(0) => return None,
            Ok(_) => {}
            Err(_) => {
                return Some((
                    Ok(bytes::Bytes::from_static(b": keep-alive\n\n")),
                    Some(events),
                ))
            }
        }
        let mut out = BytesMut::new();
        let mut ended = false;
        for event in batch {
            match event {
                Ok(event) => sse::write(&event, &mut out),
                Err(status) => {
                    debug!(code = ?status.code(), message = status.message(), "web tail ended");
                    sse::write_failure(&status, &mut out);
                    ended = true;
                    break;
                }
            }
        }
        let next = (!ended).then_some(events);
        Some((Ok(out.freeze()), next))
    });
    first.chain(rest)
}

use futures::StreamExt as _;
