//! Assembles the gateway, in four steps that `run` names: connect (spool
//! and broker connections), build the services (LogGateway, health,
//! reflection), serve, shut down in order.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use tokio::{net::TcpListener, sync::watch};
use tokio_util::sync::CancellationToken;
use tonic::{
    service::Routes,
    transport::{server::TcpIncoming, Server},
};
use tonic_health::{server::HealthReporter, ServingStatus};
use tracing::{info, warn};

use crate::api::{Gateway, GatewaySettings};
use crate::broker::{self, Brokers, FirstConnect, Publisher, StreamSource};
use crate::config::ServeConfig;
use crate::ingest::Ingest;
use crate::proto::{self, v1::log_gateway_server::LogGatewayServer};
use crate::spool::{self, Spool};

/// The gRPC service name that health reports on, besides the overall "".
const SERVICE_NAME: &str = "loggate.v1.LogGateway";
/// Idle time before TCP keepalive probes a client connection.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);
/// HTTP/2 flow-control windows (see `serve`).
const STREAM_WINDOW_BYTES: u32 = 256 * 1024;
const CONNECTION_WINDOW_BYTES: u32 = 1024 * 1024;
/// Largest gRPC request accepted: a full batch of large records fits.
const MAX_REQUEST_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("--amqp-url: {0}")]
    AmqpUrl(String),
    #[error(transparent)]
    Broker(#[from] broker::Error),
    #[error("--spool-dir {0}: {1}")]
    Spool(String, #[source] spool::Error),
    #[error("building server reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Runs the gateway on an already-bound `listener` until `shutdown` resolves,
/// then stops accepting, ends tails with UNAVAILABLE, lets open calls finish
/// (within `--shutdown-grace`) and closes the broker connections.
pub async fn run(
    listener: TcpListener,
    config: ServeConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), Error> {
    let instance = config.server.instance_name();
    let backends = connect(&config, &instance).await?;
    let stop = CancellationToken::new();
    let (routes, health) = build_services(&config, &backends, instance.clone(), stop.clone())?;
    let reporting = tokio::spawn(report_health(
        health,
        backends.publisher.connected(),
        backends.source.connected(),
        stop.clone(),
    ));
    // Last of the set-up steps that can fail, so no drainer outlives a
    // failed start.
    if let Some(spool) = &backends.spool {
        spool.start_draining(Arc::clone(&backends.publisher));
    }
    let address = listener.local_addr().ok();
    info!(address = %address.map_or_else(|| "?".to_owned(), |a: SocketAddr| a.to_string()), %instance, broker = %backends.brokers, exchange = %config.rabbitmq.exchange, history = %config.history.history_queue, "serving");
    let served = serve(
        listener,
        routes,
        shutdown,
        config.server.shutdown_grace,
        &stop,
    )
    .await;
    stop.cancel();
    let _ = reporting.await;
    shut_down(backends).await;
    info!("stopped");
    Ok(served?)
}

/// What the gateway stands on: the spool, if configured, and the two broker
/// connections.
struct Backends {
    brokers: Brokers,
    spool: Option<Arc<Spool>>,
    publisher: Arc<Publisher>,
    source: Arc<StreamSource>,
}

/// Step 1: opens the spool and connects to RabbitMQ, declaring the topology.
async fn connect(config: &ServeConfig, instance: &str) -> Result<Backends, Error> {
    let brokers = Brokers::parse(&config.rabbitmq.broker.amqp_url).map_err(Error::AmqpUrl)?;
    let spool = match config.spool.settings() {
        Some(settings) => {
            let dir = settings.dir.display().to_string();
            Some(Arc::new(
                Spool::open(settings).map_err(|error| Error::Spool(dir, error))?,
            ))
        }
        None => None,
    };
    // With a spool the gateway is useful without a broker, so it starts anyway.
    let first = FirstConnect {
        wait: config.rabbitmq.broker_wait,
        required: spool.is_none(),
    };
    // Publishing and consuming use separate connections: a blocked publisher
    // connection must not stop tails.
    let (publisher, source) = tokio::try_join!(
        Publisher::connect(
            brokers.clone(),
            format!("loggate {instance} publish"),
            first,
            config.topology(),
            config.rabbitmq.publisher_settings(),
        ),
        StreamSource::connect(
            brokers.clone(),
            format!("loggate {instance} tail"),
            first,
            &config.history.history_queue,
            config.tails.tail_prefetch,
        ),
    )?;
    Ok(Backends {
        brokers,
        spool,
        publisher: Arc::new(publisher),
        source: Arc::new(source),
    })
}

/// Step 2: the gRPC services, and the health reporter that `report_health`
/// keeps current.
///
/// Request-level layers belong here: an interceptor in front of the
/// LogGateway service (authentication, issue 10) wraps `gateway` before it
/// is added. Health and reflection stay open.
fn build_services(
    config: &ServeConfig,
    backends: &Backends,
    instance: String,
    stop: CancellationToken,
) -> Result<(Routes, HealthReporter), Error> {
    let ingest = Arc::new(Ingest::new(
        Arc::clone(&backends.publisher),
        backends.spool.clone(),
    ));
    let gateway = Gateway::new(
        ingest,
        Arc::clone(&backends.source),
        GatewaySettings {
            instance,
            calls: config.limits.settings(),
            tails: config.tails.settings(),
        },
        stop,
    );
    let gateway = LogGatewayServer::new(gateway).max_decoding_message_size(MAX_REQUEST_BYTES);

    // grpcurl 1.8 speaks only v1alpha; newer tools speak v1. Each version's
    // listing names every service served: ours, health, and both reflections
    // (a builder only registers its own version unless told otherwise).
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .include_reflection_service(false)
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(
                tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
            )
    };
    let (reporter, health) = tonic_health::server::health_reporter();
    let routes = Routes::new(health)
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?)
        .add_service(gateway);
    Ok((routes, reporter))
}

/// Step 3: serves `routes` on `listener` until `shutdown` resolves, then
/// stops accepting (cancelling `stop` ends tails) and gives open calls
/// `grace` to finish.
async fn serve(
    listener: TcpListener,
    routes: Routes,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
    stop: &CancellationToken,
) -> Result<(), tonic::transport::Error> {
    // Without TCP_NODELAY a response's frames wait for the client's delayed
    // ACK (Nagle): 40 ms per pipelined call. Keepalive notices vanished peers.
    // TLS (issue 10) wraps these connections, before the server sees them.
    let incoming = TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(TCP_KEEPALIVE));
    let serving = Server::builder()
        // Flow control is LogStream's backpressure: a window of 256 KiB per
        // stream (about a thousand typical records) keeps what a stream can
        // park in the gateway small, and is still far above the bandwidth-delay
        // product of a data-centre link. hyper's default is 1 MiB.
        .initial_stream_window_size(Some(STREAM_WINDOW_BYTES))
        .initial_connection_window_size(Some(CONNECTION_WINDOW_BYTES))
        .add_routes(routes)
        .serve_with_incoming_shutdown(incoming, stop.clone().cancelled_owned());
    tokio::pin!(serving);
    tokio::select! {
        served = &mut serving => served,
        () = shutdown => {
            info!("shutting down: no new calls, ending tails, finishing open calls");
            stop.cancel();
            match tokio::time::timeout(grace, &mut serving).await {
                Ok(served) => served,
                Err(_) => {
                    warn!(?grace, "open calls did not finish in time; closing anyway");
                    Ok(())
                }
            }
        }
    }
}

/// Step 4: stops what `connect` started, in order.
async fn shut_down(backends: Backends) {
    // The drainer publishes, so it stops (and syncs its cursor) first.
    if let Some(spool) = &backends.spool {
        spool.close().await;
    }
    tokio::join!(backends.publisher.close(), backends.source.close());
}

/// SERVING while both broker connections are up, NOT_SERVING otherwise and
/// from the moment shutdown begins.
async fn report_health(
    reporter: HealthReporter,
    mut publishing: watch::Receiver<bool>,
    mut consuming: watch::Receiver<bool>,
    stop: CancellationToken,
) {
    loop {
        let up = *publishing.borrow_and_update() && *consuming.borrow_and_update();
        let status = if up {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        for service in ["", SERVICE_NAME] {
            reporter.set_service_status(service, status).await;
        }
        tokio::select! {
            changed = publishing.changed() => if changed.is_err() { break },
            changed = consuming.changed() => if changed.is_err() { break },
            () = stop.cancelled() => break,
        }
    }
    for service in ["", SERVICE_NAME] {
        reporter
            .set_service_status(service, ServingStatus::NotServing)
            .await;
    }
}
