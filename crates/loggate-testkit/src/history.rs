//! Reading records back through the gateway's Tail: the whole history
//! stream, or the next record of a live tail.

use futures::StreamExt;
use loggate::proto::v1::{self as pb, log_gateway_client::LogGatewayClient};
use tonic::transport::Channel;

use crate::WAIT;

/// Every record in the gateway's history stream, oldest first.
pub async fn history(client: &mut LogGatewayClient<Channel>) -> Vec<pb::LogRecord> {
    let mut stream = client
        .tail(pb::TailRequest {
            start: Some(pb::tail_request::Start::FromBeginning(true)),
            history_only: true,
            ..Default::default()
        })
        .await
        .expect("tail")
        .into_inner();
    let mut records = Vec::new();
    while let Some(response) = tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("the history arrives in time")
    {
        if let Some(pb::tail_response::Event::Record(record)) = response.expect("ok").event {
            records.push(record);
        }
    }
    records
}

/// The next event of a tail, which must be a record.
pub async fn next_record(stream: &mut tonic::Streaming<pb::TailResponse>) -> pb::LogRecord {
    let response = tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("a record arrives in time")
        .expect("stream open")
        .expect("no error");
    match response.event {
        Some(pb::tail_response::Event::Record(record)) => record,
        other => panic!("expected a record, got {other:?}"),
    }
}

/// A live tail on the gateway at `url` whose client reads nothing until
/// asked, behind a 1 KiB HTTP/2 window: the slowest follower there is, for
/// tests of what the hub does with one.
pub async fn slow_live_tail(url: &str) -> tonic::Streaming<pb::TailResponse> {
    let tiny_window = Channel::from_shared(url.to_owned())
        .expect("url")
        .initial_stream_window_size(1024)
        .connect()
        .await
        .expect("connect");
    LogGatewayClient::new(tiny_window)
        .tail(pb::TailRequest::default())
        .await
        .expect("tail opens")
        .into_inner()
}
