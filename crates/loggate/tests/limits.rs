//! Nothing one client can do takes the gateway down: a LogStream client that
//! never reads its answers stops being read, and the transport and
//! per-principal limits answer the excess instead of serving it.

use std::{future::poll_fn, net::SocketAddr, time::Duration};

use bytes::Bytes;
use loggate::proto::v1 as pb;
use loggate_testkit::{
    bearer, eventually_async, fresh_names, memory_bytes, principal, record, serve_process,
    AuthFile, Gateway, MemoryField, WAIT,
};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
};
use tonic::Code;

/// How long a send may wait for flow-control room before the client counts
/// the gateway as no longer reading.
const STALL: Duration = Duration::from_secs(3);

/// One gRPC message on the wire: uncompressed flag, big-endian length, bytes.
fn grpc_frame(message: &impl prost::Message, into: &mut Vec<u8>) {
    let body = message.encode_to_vec();
    into.push(0);
    into.extend_from_slice(&u32::try_from(body.len()).expect("small").to_be_bytes());
    into.extend_from_slice(&body);
}

/// A raw HTTP/2 LogStream whose client gives the gateway a zero receive
/// window: not one byte of an answer can reach it, and it never reads.
struct DeafStream {
    send: h2::SendStream<Bytes>,
    /// Held, never polled: the answers' headers wait here unread.
    _response: h2::client::ResponseFuture,
}

impl DeafStream {
    async fn open(address: SocketAddr) -> DeafStream {
        let tcp = TcpStream::connect(address).await.expect("connect");
        let (client, connection) = h2::client::Builder::new()
            .initial_window_size(0)
            .handshake::<_, Bytes>(tcp)
            .await
            .expect("HTTP/2 handshake");
        tokio::spawn(connection);
        let mut client = client.ready().await.expect("ready");
        let request =
            http::Request::post(format!("http://{address}/loggate.v1.LogGateway/LogStream"))
                .header("content-type", "application/grpc")
                .header("te", "trailers")
                .body(())
                .expect("request");
        let (response, send) = client.send_request(request, false).expect("stream opens");
        DeafStream {
            send,
            _response: response,
        }
    }

    /// Sends `chunk` once the gateway's flow-control window has room for it;
    /// `false` if no room came within `STALL` (the gateway stopped reading).
    async fn send(&mut self, chunk: Bytes) -> bool {
        self.send.reserve_capacity(chunk.len());
        while self.send.capacity() < chunk.len() {
            match tokio::time::timeout(STALL, poll_fn(|cx| self.send.poll_capacity(cx))).await {
                Ok(Some(Ok(_))) => {}
                _ => return false,
            }
        }
        self.send.send_data(chunk, false).is_ok()
    }
}

#[tokio::test]
async fn a_log_stream_client_that_never_reads_its_answers_stops_being_read() {
    const REQUESTS: u64 = 100_000;
    const PER_CHUNK: u64 = 1_000;
    let (exchange, history, _names) = fresh_names();
    let (child, url) = serve_process(&["--exchange", &exchange, "--history-queue", &history]).await;
    let pid = child.id().expect("running");
    let address: SocketAddr = url.trim_start_matches("http://").parse().expect("address");
    let before = memory_bytes(pid, MemoryField::Resident);

    let mut stream = DeafStream::open(address).await;
    let mut sent = 0;
    while sent < REQUESTS {
        let mut chunk = Vec::new();
        for seq in sent..sent + PER_CHUNK {
            grpc_frame(
                &pb::LogStreamRequest {
                    seq,
                    records: Vec::new(),
                },
                &mut chunk,
            );
        }
        if !stream.send(chunk.into()).await {
            break;
        }
        sent += PER_CHUNK;
    }
    // Whatever the gateway took, it has had time to hold on to.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = memory_bytes(pid, MemoryField::Resident);
    eprintln!(
        "empty requests sent before the gateway stopped reading: {sent} of {REQUESTS}; \
         gateway RSS {} MiB before, {} MiB after",
        before >> 20,
        after >> 20
    );
    assert!(
        after < 100 << 20,
        "the gateway grew to {} MiB for one client that reads nothing",
        after >> 20
    );
    assert!(
        sent < REQUESTS,
        "the gateway read all {REQUESTS} requests of a client that read none of its answers"
    );

    // Everyone else is still served.
    let mut client = pb::log_gateway_client::LogGatewayClient::connect(url)
        .await
        .expect("connect");
    client
        .log(pb::LogRequest {
            record: Some(record("svc", "still served")),
        })
        .await
        .expect("another client is served");
    drop(stream);
}

/// An auth file of one principal per `(name, token)`, each of which may
/// write and read anything: these tests are about limits, not scopes.
fn open_principals(principals: &[(&str, &str)]) -> AuthFile {
    let text: String = principals
        .iter()
        .map(|(name, token)| principal(name, token, r#"["*"]"#, r#"["*"]"#))
        .collect();
    AuthFile::new(&text)
}

fn batch(count: usize) -> pb::LogBatchRequest {
    pb::LogBatchRequest {
        records: (0..count)
            .map(|i| record("svc", &format!("r{i}")))
            .collect(),
    }
}

fn live_tail() -> pb::TailRequest {
    pb::TailRequest::default()
}

#[tokio::test]
async fn one_connection_has_at_most_max_streams_per_connection_calls_open() {
    let gateway = Gateway::start(&["--max-streams-per-connection", "2"]).await;
    // One channel is one HTTP/2 connection.
    let mut client = gateway.client().await;
    let first = client.tail(live_tail()).await.expect("first tail opens");
    let _second = client.tail(live_tail()).await.expect("second tail opens");
    // The connection's third stream waits for one of the two to end: the
    // client holds it back (SETTINGS_MAX_CONCURRENT_STREAMS), so the
    // gateway never sees it.
    let mut third = Box::pin({
        let mut client = client.clone();
        async move { client.tail(live_tail()).await }
    });
    assert!(
        tokio::time::timeout(Duration::from_secs(1), &mut third)
            .await
            .is_err(),
        "a third call opened on a connection limited to two"
    );
    // Another connection is not held back by this one.
    let _other = gateway
        .client()
        .await
        .tail(live_tail())
        .await
        .expect("another connection opens a tail");
    drop(first);
    tokio::time::timeout(WAIT, third)
        .await
        .expect("the third call opens once the first ends")
        .expect("third tail opens");
}

#[tokio::test]
async fn a_principal_over_its_records_per_second_gets_resource_exhausted_naming_the_flag() {
    let auth = open_principals(&[("busy", "busy-token"), ("calm", "calm-token")]);
    let gateway = Gateway::start(&[
        "--auth-file",
        auth.path(),
        "--rate-per-principal",
        "1",
        "--burst-per-principal",
        "20",
    ])
    .await;
    let mut client = gateway.client().await;
    client
        .log_batch(bearer("busy-token", batch(20)))
        .await
        .expect("the burst is allowed");
    let refused = client
        .log_batch(bearer("busy-token", batch(5)))
        .await
        .expect_err("over the rate");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains("--rate-per-principal") && refused.message().contains("busy"),
        "{}",
        refused.message()
    );
    let log = client
        .log(bearer(
            "busy-token",
            pb::LogRequest {
                record: Some(record("svc", "one more")),
            },
        ))
        .await
        .expect_err("Log spends from the same bucket");
    assert_eq!(log.code(), Code::ResourceExhausted);

    // A LogStream request over the rate is answered with the refusal; the
    // stream stays open.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut answers = client
        .log_stream(bearer(
            "busy-token",
            tokio_stream::wrappers::ReceiverStream::new(rx),
        ))
        .await
        .expect("stream opens")
        .into_inner();
    tx.send(pb::LogStreamRequest {
        seq: 7,
        records: vec![record("svc", "streamed")],
    })
    .await
    .expect("send");
    let answer = tokio::time::timeout(WAIT, answers.message())
        .await
        .expect("answered in time")
        .expect("no stream error")
        .expect("an answer");
    assert_eq!(answer.seq, 7);
    let error = answer.error.expect("refused");
    assert_eq!(error.code, Code::ResourceExhausted as i32);
    assert!(error.message.contains("--rate-per-principal"), "{error:?}");

    // Other principals have buckets of their own.
    client
        .log_batch(bearer("calm-token", batch(20)))
        .await
        .expect("another principal is not limited by the first");
}

#[tokio::test]
async fn a_principal_gets_at_most_max_tails_per_principal_tails() {
    let auth = open_principals(&[("watcher", "watch-token"), ("other", "other-token")]);
    let gateway =
        Gateway::start(&["--auth-file", auth.path(), "--max-tails-per-principal", "2"]).await;
    let mut client = gateway.client().await;
    let first = client
        .tail(bearer("watch-token", live_tail()))
        .await
        .expect("first tail");
    let _second = client
        .tail(bearer("watch-token", live_tail()))
        .await
        .expect("second tail");
    let refused = client
        .tail(bearer("watch-token", live_tail()))
        .await
        .expect_err("a third tail of the same principal");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains("--max-tails-per-principal")
            && refused.message().contains("watcher"),
        "{}",
        refused.message()
    );
    let _others = client
        .tail(bearer("other-token", live_tail()))
        .await
        .expect("another principal still tails");
    // A tail that ends gives its place back.
    drop(first);
    eventually_async("the principal's place comes back", || {
        let mut client = client.clone();
        async move {
            client
                .tail(bearer("watch-token", live_tail()))
                .await
                .map(drop)
                .is_ok()
        }
    })
    .await;
}

#[tokio::test]
async fn a_principal_holds_at_most_a_tenth_of_the_history_tail_channels() {
    let auth = open_principals(&[("reader", "read-token"), ("other", "other-token")]);
    let gateway = Gateway::start(&["--auth-file", auth.path(), "--tail-channels", "20"]).await;
    let mut client = gateway.client().await;
    let from_start = || pb::TailRequest {
        start: Some(pb::tail_request::Start::FromBeginning(true)),
        ..Default::default()
    };
    let mut open = Vec::new();
    for _ in 0..2 {
        open.push(
            client
                .tail(bearer("read-token", from_start()))
                .await
                .expect("within its share"),
        );
    }
    let refused = client
        .tail(bearer("read-token", from_start()))
        .await
        .expect_err("a third history tail: 20 channels, a tenth each");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains("--tail-channels") && refused.message().contains("reader"),
        "{}",
        refused.message()
    );
    let _live = client
        .tail(bearer("read-token", live_tail()))
        .await
        .expect("a live tail takes no channel: still served");
    let _others = client
        .tail(bearer("other-token", from_start()))
        .await
        .expect("another principal still gets a channel");
    // A tail that ends gives its share back.
    open.pop();
    eventually_async("the principal's share comes back", || {
        let mut client = client.clone();
        async move {
            client
                .tail(bearer("read-token", from_start()))
                .await
                .map(drop)
                .is_ok()
        }
    })
    .await;
}

#[tokio::test]
async fn a_tail_request_gets_a_far_smaller_decode_limit_than_a_batch() {
    let gateway = Gateway::start(&[]).await;
    let mut client = gateway.client().await;
    // About 100 KB of valid service names: no filter needs that much.
    let services: Vec<String> = (0..2_000).map(|i| format!("service-{i:044}")).collect();
    let refused = client
        .tail(pb::TailRequest {
            services,
            ..Default::default()
        })
        .await
        .expect_err("too large a Tail request");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(
        refused.message().contains("at most 65536 bytes"),
        "{}",
        refused.message()
    );
    // A batch ten times that size is still taken.
    let big: Vec<pb::LogRecord> = (0..1_000)
        .map(|i| record("svc", &format!("{i}:{}", "x".repeat(1_000))))
        .collect();
    client
        .log_batch(pb::LogBatchRequest { records: big })
        .await
        .expect("a 1 MB batch is accepted");
}

/// Opens a bare HTTP/2 connection (preface and SETTINGS, nothing more) that
/// then reads nothing and answers no ping; whether the gateway closes it
/// within `within`.
async fn silent_connection_is_closed_within(address: SocketAddr, within: Duration) -> bool {
    let mut tcp = TcpStream::connect(address).await.expect("connect");
    tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .expect("preface");
    tokio::time::sleep(within).await;
    // Whatever the gateway sent is buffered; a closed connection then ends.
    let mut sink = vec![0; 64 * 1024];
    loop {
        match tokio::time::timeout(Duration::from_millis(200), tcp.read(&mut sink)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
            Err(_) => return false,
        }
    }
}

#[tokio::test]
async fn a_connection_that_answers_no_ping_is_closed() {
    let gateway = Gateway::start(&[
        "--http2-keepalive-interval",
        "200ms",
        "--http2-keepalive-timeout",
        "300ms",
    ])
    .await;
    assert!(
        silent_connection_is_closed_within(gateway.address, Duration::from_secs(2)).await,
        "a connection whose peer answers no ping stayed open"
    );
}

#[tokio::test]
async fn a_connection_older_than_max_connection_age_is_sent_away() {
    let gateway = Gateway::start(&["--max-connection-age", "300ms"]).await;
    // A well-behaved HTTP/2 client (it acknowledges SETTINGS and pings), idle.
    let tcp = TcpStream::connect(gateway.address).await.expect("connect");
    let (_client, connection): (h2::client::SendRequest<Bytes>, _) =
        h2::client::handshake(tcp).await.expect("HTTP/2 handshake");
    // How it ends (a clean GOAWAY, or the socket closing after it) does
    // not matter here; that it ends does.
    let _ = tokio::time::timeout(Duration::from_secs(3), connection)
        .await
        .expect("the gateway ended the connection (GOAWAY) after --max-connection-age");
    // Clients simply reconnect.
    gateway
        .client()
        .await
        .log(pb::LogRequest {
            record: Some(record("svc", "after the age")),
        })
        .await
        .expect("a new connection is served");
}
