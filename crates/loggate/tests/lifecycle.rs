//! The gateway's life: start-up without a broker, losing and regaining the
//! broker, health, reflection, and graceful shutdown.

use std::time::Duration;

use clap::Parser as _;
use loggate::{config::ServeConfig, proto::v1 as pb};
use loggate_testkit::{
    close_connections, eventually_async, record, Gateway, Probe, Vhost, NOT_SERVING, SERVING, WAIT,
};
use tokio_stream::StreamExt;
use tonic::Code;

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
    let gateway = Gateway::start_at(&vhost.url(), &["--tail-resume-wait", "1s"]).await;
    let mut stream = gateway
        .client()
        .await
        .tail(pb::TailRequest::default())
        .await
        .expect("tail opens")
        .into_inner();
    // Locked out: the tail connection cannot come back.
    vhost.revoke();
    close_connections(&format!("{} tail", gateway.instance));
    let started = tokio::time::Instant::now();
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
        started.elapsed() >= std::time::Duration::from_millis(900),
        "it waited first"
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

    // Lose the connection: the gateway tries the dead one, then comes back.
    close_connections(&gateway.instance);
    eventually_async("health returns to SERVING", || async {
        gateway.health_status("").await == SERVING
    })
    .await;
    eventually_async("a Log is accepted again", || {
        let mut client = client.clone();
        async move {
            client
                .log(pb::LogRequest {
                    record: Some(record("s", "after failover")),
                })
                .await
                .is_ok()
        }
    })
    .await;
}
