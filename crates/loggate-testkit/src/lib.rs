//! loggate's test harness, shared by the tests of `loggate` and `loggate-bench`: an in-process gateway on 127.0.0.1:0 with unique exchange and
//! history-stream names, and an independent lapin connection to check what
//! really reached RabbitMQ. Everything a test declares is deleted when its
//! guard drops, even when the test fails.

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

mod process;
pub use process::{loggate_bin, spawn_serving, SpawnError};
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
    /// Deleted when the gateway is dropped, unless taken.
    names: Option<Names>,
}

impl Gateway {
    /// Starts a gateway with unique names and the given extra `serve` flags.
    pub async fn start(extra: &[&str]) -> Gateway {
        Gateway::start_at(AMQP_URL, extra).await
    }

    /// Starts a gateway on the broker at `amqp_url`.
    pub async fn start_at(amqp_url: &str, extra: &[&str]) -> Gateway {
        let names = Names {
            exchanges: vec![unique("x")],
            queues: vec![unique("history")],
        };
        Gateway::launch(amqp_url, names, extra, true).await
    }

    /// Starts a gateway that may not reach RabbitMQ (one with a spool starts
    /// anyway): waits only until it answers gRPC, not until it is SERVING.
    pub async fn start_unready(amqp_url: &str, names: Names, extra: &[&str]) -> Gateway {
        Gateway::launch(amqp_url, names, extra, false).await
    }

    /// Starts a gateway on the exchange and history queue of `names` (e.g.
    /// taken from a gateway that stopped), which it then cleans up.
    pub async fn start_on(names: Names, extra: &[&str]) -> Gateway {
        Gateway::launch(AMQP_URL, names, extra, true).await
    }

    async fn launch(amqp_url: &str, names: Names, extra: &[&str], serving: bool) -> Gateway {
        let exchange = names.exchanges[0].clone();
        let history_queue = names.queues[0].clone();
        let instance = unique("gw");
        let mut args = vec![
            "serve",
            "--amqp-url",
            amqp_url,
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
            names: Some(names),
        };
        gateway.wait_until_answering(serving).await;
        gateway
    }

    /// Hands over the exchange and queue, so they outlive this gateway.
    pub fn take_names(&mut self) -> Names {
        self.names.take().expect("names not taken twice")
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    pub async fn client(&self) -> LogGatewayClient<Channel> {
        LogGatewayClient::connect(self.url())
            .await
            .expect("connect to the gateway")
    }

    /// A plain gRPC channel to the gateway, for any client.
    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url())
            .expect("url")
            .connect()
            .await
            .expect("connect")
    }

    pub async fn health(&self) -> tonic_health::pb::health_client::HealthClient<Channel> {
        tonic_health::pb::health_client::HealthClient::new(self.channel().await)
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

    /// Waits until health answers: SERVING if `serving`, anything otherwise.
    async fn wait_until_answering(&self, serving: bool) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Ok(channel) = Channel::from_shared(self.url())
                .expect("url")
                .connect()
                .await
            {
                let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
                let check = health
                    .check(tonic_health::pb::HealthCheckRequest {
                        service: String::new(),
                    })
                    .await;
                if check.is_ok_and(|r| !serving || r.into_inner().status == SERVING) {
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

/// A fresh exchange and history queue name, and the guard that deletes them.
pub fn fresh_names() -> (String, String, Names) {
    let (exchange, history) = (unique("x"), unique("history"));
    let names = Names {
        exchanges: vec![exchange.clone()],
        queues: vec![history.clone()],
    };
    (exchange, history, names)
}

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
                let Ok(connection) =
                    Connection::connect(AMQP_URL, ConnectionProperties::default()).await
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
        Probe::bind_at(AMQP_URL, exchange, binding).await
    }

    /// The same, on the broker (vhost) at `amqp_url`.
    pub async fn bind_at(amqp_url: &str, exchange: &str, binding: &str) -> Probe {
        let connection = Connection::connect(amqp_url, ConnectionProperties::default())
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
/// The table form is used because `close_connection` wants its pid syntax.
pub fn connections_named(needle: &str) -> Vec<(String, String, u64)> {
    let table = rabbitmqctl(&[
        "list_connections",
        "pid",
        "client_properties",
        "channels",
        "-q",
        "--no-table-headers",
    ]);
    table
        .lines()
        .filter_map(|line| {
            let mut columns = line.split('\t');
            let pid = columns.next()?;
            let properties = columns.next()?;
            let channels = columns.next()?.trim().parse().ok()?;
            let (_, rest) = properties.split_once("{\"connection_name\",\"")?;
            let (name, _) = rest.split_once('"')?;
            name.contains(needle)
                .then(|| (pid.to_owned(), name.to_owned(), channels))
        })
        .collect()
}

/// Consumers on the channels of connections whose name contains `needle`.
/// (On RabbitMQ 3.10, `list_consumers` does not show stream consumers and a
/// stream's `consumers` count is stale, but a channel's `consumer_count` is right.)
pub fn consumers_of_connection(needle: &str) -> u64 {
    let pids: Vec<String> = connections_named(needle)
        .into_iter()
        .map(|(pid, _, _)| pid)
        .collect();
    let table = rabbitmqctl(&[
        "list_channels",
        "connection",
        "consumer_count",
        "-q",
        "--no-table-headers",
    ]);
    table
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .filter(|(connection, _)| pids.iter().any(|p| p == connection))
        .filter_map(|(_, count)| count.trim().parse::<u64>().ok())
        .sum()
}

/// Polls `condition` until it holds or `WAIT` passes.
pub async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A virtual host of the test's own, so that it can break the gateway's broker
/// access (permissions, connections) without touching any other test.
pub struct Vhost {
    pub name: String,
}

impl Vhost {
    pub fn create() -> Vhost {
        let name = unique("vhost");
        rabbitmqctl(&["add_vhost", &name]);
        let vhost = Vhost { name };
        vhost.grant();
        vhost
    }

    /// The AMQP URL of this vhost.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:5672/{}", self.name)
    }

    /// Lets `guest` in.
    pub fn grant(&self) {
        rabbitmqctl(&[
            "set_permissions",
            "-p",
            &self.name,
            "guest",
            ".*",
            ".*",
            ".*",
        ]);
    }

    /// Locks `guest` out: new connections are refused until `grant`.
    pub fn revoke(&self) {
        rabbitmqctl(&["clear_permissions", "-p", &self.name, "guest"]);
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        let _ = std::process::Command::new("rabbitmqctl")
            .args(["delete_vhost", &self.name])
            .output();
    }
}

/// Closes every connection whose name contains `needle`, as an operator (or a
/// broker failure) would.
pub fn close_connections(needle: &str) -> usize {
    let found = connections_named(needle);
    for (pid, _, _) in &found {
        rabbitmqctl(&["close_connection", pid, "closed by a loggate test"]);
    }
    found.len()
}

/// Polls an async `condition` until it holds or `WAIT` passes.
pub async fn eventually_async<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !condition().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

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

/// Starts `loggate serve` as a process; returns it and its gRPC URL.
pub async fn serve_process(args: &[&str]) -> (tokio::process::Child, String) {
    let mut command = tokio::process::Command::new(loggate_bin());
    command
        .arg("serve")
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let (child, address) = spawn_serving(command, WAIT)
        .await
        .expect("serve starts and reports its address");
    (child, format!("http://{address}"))
}
