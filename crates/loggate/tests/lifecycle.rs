//! The gateway's life: start-up without a broker, losing and regaining the
//! broker, health, reflection, and graceful shutdown.

use std::{
    collections::HashSet,
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use clap::Parser as _;
use loggate::{
    config::ServeConfig,
    proto::v1::{self as pb, log_gateway_client::LogGatewayClient},
};
use loggate_testkit::{
    close_connections, connections_named, eventually_async, fresh_names, history, rabbitmqctl,
    record, serve_process, Gateway, Names, Probe, Vhost, NOT_SERVING, SERVING, WAIT,
};
use tokio::process::Child;
use tokio_stream::StreamExt;
use tonic::{transport::Channel, Code, Status};
use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest, HealthCheckResponse};

/// The gateway's overall health ("") as it reports each change: a gRPC
/// health Watch, so a test waits for the event itself rather than polling
/// for a state it might see before the change.
struct HealthWatch(tonic::Streaming<HealthCheckResponse>);

impl HealthWatch {
    async fn open(channel: Channel) -> HealthWatch {
        let watch = HealthClient::new(channel)
            .watch(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .expect("health watch")
            .into_inner();
        HealthWatch(watch)
    }

    /// Waits until the gateway reports `status`, which means `what`; fails
    /// if the watch ends first or nothing comes within `WAIT` (a hang, not
    /// a timing).
    async fn until(&mut self, status: i32, what: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let reported = tokio::time::timeout_at(deadline, self.0.next())
                .await
                .unwrap_or_else(|_| panic!("health never said {what}"))
                .unwrap_or_else(|| panic!("the health watch ended before saying {what}"))
                .expect("a health status");
            if reported.status == status {
                return;
            }
        }
    }
}

/// A gRPC channel to a gateway process at `url`.
async fn channel_to(url: &str) -> Channel {
    Channel::from_shared(url.to_owned())
        .expect("url")
        .connect()
        .await
        .expect("connect")
}

/// Sends SIGTERM to a gateway process.
fn sigterm(child: &Child) {
    let pid = child.id().expect("running").to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(sent.success());
}

/// Waits for a gateway process to exit 0 (a hang fails after `WAIT`).
async fn exits_cleanly(child: &mut Child) {
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("exits in time")
        .expect("status");
    assert!(status.success(), "exit 0 after SIGTERM, got {status}");
}

#[tokio::test]
async fn start_fails_clearly_when_rabbitmq_never_answers() {
    let config = ServeConfig::try_parse_from([
        "serve",
        "--amqp-url",
        "amqp://guest:s3cret-password@127.0.0.1:1/%2f",
        "--broker-wait",
        "1s",
    ])
    .expect("config");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let started = tokio::time::Instant::now();
    let error = loggate::server::run(listener, config, std::future::pending())
        .await
        .expect_err("no broker");
    let message = error.to_string();
    assert!(
        message.contains("127.0.0.1:1"),
        "names host:port: {message}"
    );
    assert!(!message.contains("s3cret"), "never the password: {message}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "gives up after --broker-wait"
    );
}

#[tokio::test]
async fn health_follows_the_broker_connection_and_calls_recover() {
    let vhost = Vhost::create();
    let gateway = Gateway::start_at(&vhost.url(), &[]).await;
    assert_eq!(gateway.health_status("").await, SERVING);
    assert_eq!(
        gateway.health_status("loggate.v1.LogGateway").await,
        SERVING
    );

    // Lock the gateway out and cut its connections: it cannot reconnect.
    vhost.revoke();
    assert_eq!(
        close_connections(&gateway.instance),
        2,
        "publish and tail connections"
    );
    eventually_async("health goes NOT_SERVING", || async {
        gateway.health_status("").await == NOT_SERVING
    })
    .await;
    assert_eq!(
        gateway.health_status("loggate.v1.LogGateway").await,
        NOT_SERVING
    );

    let mut client = gateway.client().await;
    let status = client
        .log(pb::LogRequest {
            record: Some(record("s", "while down")),
        })
        .await
        .expect_err("no broker");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        !status.message().contains("guest:guest"),
        "{}",
        status.message()
    );

    // Let it back in: it reconnects by itself, re-declares, and serves again.
    vhost.grant();
    eventually_async("health goes SERVING again", || async {
        gateway.health_status("").await == SERVING
    })
    .await;
    let mut probe = Probe::bind_at(&vhost.url(), &gateway.exchange, "#").await;
    client
        .log(pb::LogRequest {
            record: Some(record("s", "after recovery")),
        })
        .await
        .expect("accepted after recovery");
    assert_eq!(probe.next_json().await["message"], "after recovery");
}

#[tokio::test]
async fn a_tail_ends_with_unavailable_when_the_broker_stays_away_past_the_resume_wait() {
    let vhost = Vhost::create();
    let gateway = Gateway::start_at(&vhost.url(), &["--tail-resume-wait", "2s"]).await;
    let mut stream = gateway
        .client()
        .await
        .tail(pb::TailRequest::default())
        .await
        .expect("tail opens")
        .into_inner();
    // Locked out: the tail connection cannot come back.
    vhost.revoke();
    let tail_connection = connections_named(&format!("{} tail", gateway.instance));
    let [(pid, _, _)] = tail_connection.as_slice() else {
        panic!("one tail connection: {tail_connection:?}");
    };
    // The clock starts before the cut, so before the gateway's own: the
    // lower bound below holds by cause and effect however slow the machine
    // is, and only rabbitmqctl's start (~0.5 s) lies between the two.
    let started = tokio::time::Instant::now();
    rabbitmqctl(&["close_connection", pid, "closed by a loggate test"]);
    let ended = tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("the tail ends")
        .expect("with a status");
    let status = ended.expect_err("an error");
    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        status.message().contains("--tail-resume-wait"),
        "{}",
        status.message()
    );
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "it waited --tail-resume-wait first"
    );
}

#[tokio::test]
async fn shutdown_ends_open_tails_with_unavailable_and_returns() {
    let gateway = Gateway::start(&[]).await;
    let mut client = gateway.client().await;
    let mut stream = client
        .tail(pb::TailRequest::default())
        .await
        .expect("tail opens")
        .into_inner();
    let started = tokio::time::Instant::now();
    let stopping = tokio::spawn(gateway.stop());

    let ended = tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("the tail ends")
        .expect("with a status");
    let status = ended.expect_err("an error status");
    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        status.message().contains("shutting down"),
        "{}",
        status.message()
    );

    stopping
        .await
        .expect("joined")
        .expect("run returns Ok after a graceful shutdown");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn reflection_lists_every_service_in_both_versions() {
    use tonic_reflection::pb::{v1, v1alpha};

    let gateway = Gateway::start(&[]).await;
    let expected = [
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
        "loggate.v1.LogGateway",
        "opentelemetry.proto.collector.logs.v1.LogsService",
    ];

    let mut alpha =
        v1alpha::server_reflection_client::ServerReflectionClient::new(gateway.channel().await);
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let mut responses = alpha
        .server_reflection_info(tokio_stream::once(request))
        .await
        .expect("reflection")
        .into_inner();
    let response = responses.next().await.expect("a response").expect("ok");
    let Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        response.message_response
    else {
        panic!("expected a service list");
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    assert_eq!(names, expected);

    let mut v1 = v1::server_reflection_client::ServerReflectionClient::new(gateway.channel().await);
    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut responses = v1
        .server_reflection_info(tokio_stream::once(request))
        .await
        .expect("reflection")
        .into_inner();
    let response = responses.next().await.expect("a response").expect("ok");
    let Some(v1::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
        response.message_response
    else {
        panic!("expected a service list");
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    assert_eq!(names, expected);
}

#[tokio::test]
async fn a_dead_broker_in_the_list_is_skipped_at_start_and_on_reconnect() {
    let vhost = Vhost::create();
    // The first node of the "cluster" never answers; the second is real.
    let urls = format!(
        "amqp://guest:guest@127.0.0.1:1/{0},{1}",
        vhost.name,
        vhost.url()
    );
    let gateway = Gateway::start_at(&urls, &[]).await;
    let mut probe = Probe::bind_at(&vhost.url(), &gateway.exchange, "#").await;
    let mut client = gateway.client().await;
    client
        .log(pb::LogRequest {
            record: Some(record("s", "via the second broker")),
        })
        .await
        .expect("accepted");
    assert_eq!(probe.next_json().await["message"], "via the second broker");

    // Lose the connections while locked out, so the loss is seen: health
    // goes NOT_SERVING while the gateway tries the dead one and the real one.
    let mut health = HealthWatch::open(gateway.channel().await).await;
    health.until(SERVING, "serving").await;
    vhost.revoke();
    assert_eq!(close_connections(&gateway.instance), 2);
    health.until(NOT_SERVING, "the connections are lost").await;
    // Let back in: it finds the real one past the dead one again.
    vhost.grant();
    health
        .until(SERVING, "reconnected past the dead broker")
        .await;
    client
        .log(pb::LogRequest {
            record: Some(record("s", "after failover")),
        })
        .await
        .expect("accepted once SERVING again");
    assert_eq!(probe.next_json().await["message"], "after failover");
}

#[tokio::test]
async fn health_is_not_serving_while_either_broker_connection_is_down() {
    let vhost = Vhost::create();
    let gateway = Gateway::start_at(&vhost.url(), &[]).await;
    let mut health = HealthWatch::open(gateway.channel().await).await;
    health.until(SERVING, "serving").await;
    // Only in this vhost: a connection closed stays down until `grant`.
    for (down, up) in [("tail", "publish"), ("publish", "tail")] {
        vhost.revoke();
        let cut = close_connections(&format!("{} {down}", gateway.instance));
        assert_eq!(cut, 1, "the {down} connection");
        health
            .until(NOT_SERVING, &format!("the {down} connection is down"))
            .await;
        assert_eq!(
            connections_named(&format!("{} {up}", gateway.instance)).len(),
            1,
            "the {up} connection is still up while health says NOT_SERVING"
        );
        vhost.grant();
        health
            .until(SERVING, &format!("the {down} connection is back"))
            .await;
    }
}

#[tokio::test]
async fn health_is_not_serving_from_the_start_of_shutdown() {
    let (exchange, history_queue, _names) = fresh_names();
    // A long grace: the open watch below keeps the process from exiting
    // until it is dropped, so what it reports comes before the exit.
    let (mut gateway, url) = serve_process(&[
        "--exchange",
        &exchange,
        "--history-queue",
        &history_queue,
        "--shutdown-grace",
        "60s",
    ])
    .await;
    let channel = channel_to(&url).await;
    let mut health = HealthWatch::open(channel.clone()).await;
    health.until(SERVING, "serving").await;
    let mut tail = LogGatewayClient::new(channel)
        .tail(pb::TailRequest::default())
        .await
        .expect("tail opens")
        .into_inner();

    sigterm(&gateway);
    health.until(NOT_SERVING, "shutting down").await;
    assert!(
        gateway.try_wait().expect("waitable").is_none(),
        "NOT_SERVING while the gateway still runs"
    );
    let ended = tokio::time::timeout(WAIT, tail.next())
        .await
        .expect("the tail ends")
        .expect("with a status")
        .expect_err("an error");
    assert_eq!(ended.code(), Code::Unavailable, "{ended:?}");
    // With nothing open any more, the process exits.
    drop(health);
    exits_cleanly(&mut gateway).await;
}

/// Waits until every id of `wanted` is in the history of the gateway on
/// `names`, read by a gateway of this test's own; returns the history's ids.
async fn history_on(names: Names, wanted: &[String]) -> Vec<String> {
    let reader = Gateway::start_on(names, &[]).await;
    let mut client = reader.client().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let ids: Vec<String> = history(&mut client)
            .await
            .into_iter()
            .map(|r| r.id)
            .collect();
        let present: HashSet<&str> = ids.iter().map(String::as_str).collect();
        if wanted.iter().all(|id| present.contains(id.as_str()))
            || tokio::time::Instant::now() >= deadline
        {
            return ids;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn sigterm_lets_open_log_batch_calls_finish_and_keeps_what_it_acknowledged() {
    let (exchange, history_queue, names) = fresh_names();
    // Room for one batch at a time: the other clients' calls wait inside
    // the gateway, so calls are open whenever SIGTERM arrives.
    let (mut gateway, url) = serve_process(&[
        "--exchange",
        &exchange,
        "--history-queue",
        &history_queue,
        "--max-inflight",
        "100",
    ])
    .await;

    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let terminated = Arc::new(AtomicBool::new(false));
    let answered_after = Arc::new(AtomicUsize::new(0));
    let refusals = Arc::new(Mutex::new(Vec::<Status>::new()));
    let mut load = tokio::task::JoinSet::new();
    for client_no in 0..8 {
        let (url, acked, terminated, answered_after, refusals) = (
            url.clone(),
            Arc::clone(&acked),
            Arc::clone(&terminated),
            Arc::clone(&answered_after),
            Arc::clone(&refusals),
        );
        load.spawn(async move {
            let mut client = LogGatewayClient::new(channel_to(&url).await);
            for call in 0.. {
                let records = (0..100)
                    .map(|i| record("stopping", &format!("c{client_no}.{call}.{i}")))
                    .collect();
                match client.log_batch(pb::LogBatchRequest { records }).await {
                    Ok(response) => {
                        let response = response.into_inner();
                        assert!(!response.spooled, "no spool configured");
                        acked.lock().expect("lock").extend(response.ids);
                        if terminated.load(Ordering::Acquire) {
                            answered_after.fetch_add(1, Ordering::AcqRel);
                        }
                    }
                    Err(status) => {
                        refusals.lock().expect("lock").push(status);
                        return;
                    }
                }
            }
        });
    }
    eventually_async("some batches acknowledged", || async {
        acked.lock().expect("lock").len() >= 2_000
    })
    .await;
    sigterm(&gateway);
    terminated.store(true, Ordering::Release);
    while let Some(joined) = tokio::time::timeout(WAIT, load.join_next())
        .await
        .expect("every client's calls end")
    {
        joined.expect("a client saw OKs, then one refusal");
    }
    exits_cleanly(&mut gateway).await;

    // A call the gateway no longer takes is refused UNAVAILABLE: the
    // reconnect refused once it stopped listening (seen here), a stream it
    // refused, or its own "shutting down". A call cut off midway would be
    // UNKNOWN, CANCELLED or INTERNAL.
    for status in refusals.lock().expect("lock").iter() {
        assert_eq!(
            status.code(),
            Code::Unavailable,
            "a clean refusal, not a call cut off: {status:?}"
        );
    }
    assert!(
        answered_after.load(Ordering::Acquire) >= 1,
        "calls open at SIGTERM were answered OK"
    );
    let acked = acked.lock().expect("lock").clone();
    let found = history_on(names, &acked).await;
    let present: HashSet<&str> = found.iter().map(String::as_str).collect();
    let missing = acked
        .iter()
        .filter(|id| !present.contains(id.as_str()))
        .count();
    assert_eq!(missing, 0, "every acknowledged record is in the history");
}
