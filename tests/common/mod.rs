//! Test harness: an in-process gateway on 127.0.0.1:0 with unique exchange and
//! history-stream names, and an independent lapin connection to check what
//! really reached RabbitMQ. Everything a test declares is deleted when its
//! guard drops, even when the test fails.

#![allow(dead_code)] // each test file uses a different part of the harness

use std::{
    net::SocketAddr,
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use clap::Parser as _;
use futures::StreamExt;
use lapin::{
    message::Delivery,
    options::{
        BasicConsumeOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
        QueueDeleteOptions,
    },
    types::FieldTable,
    Connection, ConnectionProperties,
};
use loggate::{
    config::ServeConfig,
    proto::v1::{self as pb, log_gateway_client::LogGatewayClient},
    server,
};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tonic::transport::Channel;

pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// Bound on every wait in the tests, so a broken build fails instead of hanging.
pub const WAIT: Duration = Duration::from_secs(10);

/// A name no other test (or earlier run) uses.
pub fn unique(what: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("loggate-test.{what}.{}.{n}.{nanos:x}", std::process::id())
}

/// A gateway running in this process.
pub struct Gateway {
    pub address: SocketAddr,
    pub exchange: String,
    pub history_queue: String,
    pub instance: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), server::Error>>>,
    _names: Names,
}

impl Gateway {
    /// Starts a gateway with unique names and the given extra `serve` flags.
    pub async fn start(extra: &[&str]) -> Gateway {
        let exchange = unique("x");
        let history_queue = unique("history");
        let instance = unique("gw");
        let names = Names {
            exchanges: vec![exchange.clone()],
            queues: vec![history_queue.clone()],
        };
        let mut args = vec![
            "serve",
            "--amqp-url",
            AMQP_URL,
            "--exchange",
            &exchange,
            "--history-queue",
            &history_queue,
            "--instance",
            &instance,
            "--broker-wait",
            "5s",
        ];
        args.extend_from_slice(extra);
        let config = ServeConfig::try_parse_from(args).expect("valid test configuration");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("bound address");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server::run(listener, config, async {
            let _ = stopped.await;
        }));
        let gateway = Gateway {
            address,
            exchange,
            history_queue,
            instance,
            stop: Some(stop),
            task: Some(task),
            _names: names,
        };
        gateway.wait_until_serving().await;
        gateway
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    pub async fn client(&self) -> LogGatewayClient<Channel> {
        LogGatewayClient::connect(self.url())
            .await
            .expect("connect to the gateway")
    }

    pub async fn health(&self) -> tonic_health::pb::health_client::HealthClient<Channel> {
        let channel = Channel::from_shared(self.url())
            .expect("url")
            .connect()
            .await
            .expect("connect");
        tonic_health::pb::health_client::HealthClient::new(channel)
    }

    /// The health status of `service` ("" for the whole server).
    pub async fn health_status(&self, service: &str) -> i32 {
        self.health()
            .await
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("health check")
            .into_inner()
            .status
    }

    async fn wait_until_serving(&self) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Ok(channel) = Channel::from_shared(self.url()).expect("url").connect().await {
                let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
                let check = health
                    .check(tonic_health::pb::HealthCheckRequest {
                        service: String::new(),
                    })
                    .await;
                if check.is_ok_and(|r| r.into_inner().status == SERVING) {
                    return;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "gateway did not become healthy"
            );
            if self.task.as_ref().is_some_and(JoinHandle::is_finished) {
                panic!("gateway stopped during start-up");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Signals shutdown and waits for `run` to return.
    pub async fn stop(mut self) -> Result<(), server::Error> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = self.task.take().expect("not stopped twice");
        tokio::time::timeout(Duration::from_secs(15), task)
            .await
            .expect("gateway stops within 15 s")
            .expect("gateway task did not panic")
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub const SERVING: i32 = tonic_health::pb::health_check_response::ServingStatus::Serving as i32;
pub const NOT_SERVING: i32 =
    tonic_health::pb::health_check_response::ServingStatus::NotServing as i32;

/// Exchanges and queues to delete when the test ends, pass or fail.
#[derive(Default)]
pub struct Names {
    pub exchanges: Vec<String>,
    pub queues: Vec<String>,
}

impl Drop for Names {
    fn drop(&mut self) {
        let exchanges = std::mem::take(&mut self.exchanges);
        let queues = std::mem::take(&mut self.queues);
        // Drop may run inside a runtime (or while panicking): clean up on a
        // thread of our own with its own small runtime.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("cleanup runtime");
            runtime.block_on(async {
                let Ok(connection) = Connection::connect(AMQP_URL, ConnectionProperties::default()).await
                else {
                    return;
                };
                let Ok(channel) = connection.create_channel().await else {
                    return;
                };
                for queue in queues {
                    let _ = channel
                        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                        .await;
                }
                for exchange in exchanges {
                    let _ = channel
                        .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
                        .await;
                }
                let _ = connection.close(200, "test cleanup".into()).await;
            });
        });
        let _ = cleanup.join();
    }
}

/// An independent AMQP consumer: a private, auto-deleted queue bound to the
/// gateway's exchange, to see exactly what RabbitMQ routed.
pub struct Probe {
    consumer: lapin::Consumer,
    _connection: Connection,
}

impl Probe {
    /// Binds a fresh exclusive queue to `exchange` with `binding` (e.g. `#`, `*.error`).
    pub async fn bind(exchange: &str, binding: &str) -> Probe {
        let connection = Connection::connect(AMQP_URL, ConnectionProperties::default())
            .await
            .expect("probe connects");
        let channel = connection.create_channel().await.expect("channel");
        let queue = channel
            .queue_declare(
                "".into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("declare probe queue");
        channel
            .queue_bind(
                queue.name().clone(),
                exchange.into(),
                binding.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("bind probe queue");
        let consumer = channel
            .basic_consume(
                queue.name().clone(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("consume");
        Probe {
            consumer,
            _connection: connection,
        }
    }

    /// The next message routed to the probe.
    pub async fn next(&mut self) -> Delivery {
        tokio::time::timeout(WAIT, self.consumer.next())
            .await
            .expect("a message arrives in time")
            .expect("consumer open")
            .expect("delivery")
    }

    /// The next message's JSON body.
    pub async fn next_json(&mut self) -> serde_json::Value {
        let delivery = self.next().await;
        serde_json::from_slice(&delivery.data).expect("JSON body")
    }
}

/// A valid record for `service`.
pub fn record(service: &str, message: &str) -> pb::LogRecord {
    pb::LogRecord {
        service: service.into(),
        message: message.into(),
        ..Default::default()
    }
}

/// Runs `rabbitmqctl` with arguments and returns stdout.
pub fn rabbitmqctl(args: &[&str]) -> String {
    let output = std::process::Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("rabbitmqctl runs");
    assert!(
        output.status.success(),
        "rabbitmqctl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Connections whose client-provided name contains `needle`: (pid, name, channels).
pub fn connections_named(needle: &str) -> Vec<(String, String, u64)> {
    let json = rabbitmqctl(&[
        "list_connections",
        "pid",
        "client_properties",
        "channels",
        "--formatter",
        "json",
        "-q",
    ]);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap_or_default();
    rows.into_iter()
        .filter_map(|row| {
            let name = row["client_properties"]
                .as_array()?
                .iter()
                .find(|p| p[0] == "connection_name")?[2]
                .as_str()?
                .to_owned();
            name.contains(needle).then(|| {
                (
                    row["pid"].as_str().unwrap_or_default().to_owned(),
                    name,
                    row["channels"].as_u64().unwrap_or_default(),
                )
            })
        })
        .collect()
}

/// Consumers on `queue`, counted the reliable way for streams.
pub fn consumers_on(queue: &str) -> usize {
    let json = rabbitmqctl(&["list_consumers", "queue_name", "--formatter", "json", "-q"]);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap_or_default();
    rows.iter().filter(|row| row["queue_name"] == queue).count()
}

/// Polls `condition` until it holds or `WAIT` passes.
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
