//! The gateway in-process: `server::run` on 127.0.0.1:0 with unique exchange
//! and history-stream names, stopped (and its names deleted) on drop.

use std::{net::SocketAddr, time::Duration};

use clap::Parser as _;
use loggate::{config::ServeConfig, proto::v1::log_gateway_client::LogGatewayClient, server};
use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};

use crate::{unique, CertFiles, Names, AMQP_URL, WAIT};

/// gRPC health's SERVING, as the `status` field carries it.
pub const SERVING: i32 = ServingStatus::Serving as i32;
/// gRPC health's NOT_SERVING, as the `status` field carries it.
pub const NOT_SERVING: i32 = ServingStatus::NotServing as i32;

/// A gateway running in this process.
pub struct Gateway {
    /// Where it listens.
    pub address: SocketAddr,
    /// The exchange it publishes to.
    pub exchange: String,
    /// Its history stream.
    pub history_queue: String,
    /// Its `--instance`, which names its AMQP connections.
    pub instance: String,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), server::Error>>>,
    /// Deleted when the gateway is dropped, unless taken.
    names: Option<Names>,
    /// How its clients connect, when it serves TLS.
    tls: Option<ClientTlsConfig>,
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

    /// Starts a gateway serving TLS (`extra` holds its `--tls-*` flags);
    /// its clients trust `ca` (PEM), connect to it as `localhost`, and
    /// present `identity` when given (a gateway with `--tls-client-ca`
    /// admits no connection without one).
    pub async fn start_tls(extra: &[&str], ca: &[u8], identity: Option<&CertFiles>) -> Gateway {
        let names = Names {
            exchanges: vec![unique("x")],
            queues: vec![unique("history")],
        };
        let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
        if let Some(files) = identity {
            tls = tls.identity(Identity::from_pem(files.cert_pem(), files.key_pem()));
        }
        Gateway::launch_with(AMQP_URL, names, extra, true, Some(tls)).await
    }

    async fn launch(amqp_url: &str, names: Names, extra: &[&str], serving: bool) -> Gateway {
        Gateway::launch_with(amqp_url, names, extra, serving, None).await
    }

    async fn launch_with(
        amqp_url: &str,
        names: Names,
        extra: &[&str],
        serving: bool,
        tls: Option<ClientTlsConfig>,
    ) -> Gateway {
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
            tls,
        };
        gateway.wait_until_answering(serving).await;
        gateway
    }

    /// Hands over the exchange and queue, so they outlive this gateway.
    pub fn take_names(&mut self) -> Names {
        self.names.take().expect("names not taken twice")
    }

    /// The gateway's gRPC URL: `http://127.0.0.1:PORT`, or
    /// `https://localhost:PORT` when it serves TLS.
    pub fn url(&self) -> String {
        match self.tls {
            None => format!("http://{}", self.address),
            Some(_) => format!("https://localhost:{}", self.address.port()),
        }
    }

    /// A LogGateway client connected to the gateway.
    pub async fn client(&self) -> LogGatewayClient<Channel> {
        LogGatewayClient::new(self.channel().await)
    }

    /// A gRPC channel to the gateway (over TLS when it serves TLS), for any client.
    pub async fn channel(&self) -> Channel {
        self.endpoint().connect().await.expect("connect")
    }

    fn endpoint(&self) -> Endpoint {
        let endpoint = Channel::from_shared(self.url()).expect("url");
        match &self.tls {
            None => endpoint,
            Some(tls) => endpoint
                .tls_config(tls.clone())
                .expect("client TLS configuration"),
        }
    }

    /// A gRPC health client connected to the gateway.
    pub async fn health(&self) -> HealthClient<Channel> {
        HealthClient::new(self.channel().await)
    }

    /// Binds (`true`) or unbinds the history stream from the exchange with
    /// `#`, over an AMQP connection of the test's own: unbound, the
    /// exchange routes nowhere and RabbitMQ returns every record.
    pub async fn bind_history(&self, bound: bool) {
        let connection = lapin::Connection::connect(AMQP_URL, Default::default())
            .await
            .expect("connect");
        let channel = connection.create_channel().await.expect("channel");
        let (queue, exchange) = (self.history_queue.as_str(), self.exchange.as_str());
        if bound {
            channel
                .queue_bind(
                    queue.into(),
                    exchange.into(),
                    "#".into(),
                    Default::default(),
                    Default::default(),
                )
                .await
                .expect("bind");
        } else {
            channel
                .queue_unbind(
                    queue.into(),
                    exchange.into(),
                    "#".into(),
                    Default::default(),
                )
                .await
                .expect("unbind");
        }
        let _ = connection.close(200, "done".into()).await;
    }

    /// The health status of `service` ("" for the whole server).
    pub async fn health_status(&self, service: &str) -> i32 {
        self.health()
            .await
            .check(HealthCheckRequest {
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
            if let Ok(channel) = self.endpoint().connect().await {
                let check = HealthClient::new(channel)
                    .check(HealthCheckRequest {
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
        // Drop cannot await the task: signal it, and let it finish on the runtime.
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
