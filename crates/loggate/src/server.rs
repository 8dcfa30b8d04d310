//! Assembles the gateway: broker connections, the gRPC services, health,
//! reflection, and an orderly shutdown.

use std::{future::Future, sync::Arc};

use tokio::{net::TcpListener, sync::watch};
use tokio_util::sync::CancellationToken;
use tonic::transport::{server::TcpIncoming, Server};
use tonic_health::{server::HealthReporter, ServingStatus};
use tracing::{info, warn};

use crate::api::{Gateway, GatewaySettings};
use crate::broker::{
    self, Brokers, Publisher, PublisherSettings, Retention, StreamSource, Topology,
};
use crate::config::ServeConfig;
use crate::ingest::Ingest;
use crate::proto::{self, v1::log_gateway_server::LogGatewayServer};
use crate::record::Limits;
use crate::spool::{self, Spool, SpoolSettings};

/// The gRPC service name that health reports on, besides the overall "".
const SERVICE_NAME: &str = "loggate.v1.LogGateway";
/// Idle time before TCP keepalive probes a client connection.
const TCP_KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(60);
/// HTTP/2 flow-control windows (see `run`).
const STREAM_WINDOW_BYTES: u32 = 256 * 1024;
const CONNECTION_WINDOW_BYTES: u32 = 1024 * 1024;
/// Largest spool segment file (a quarter of `--spool-max-bytes` when that is
/// smaller, so drained space is given back promptly).
const SPOOL_SEGMENT_BYTES: u64 = 64 << 20;
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
    let endpoint = Brokers::parse(&config.broker.amqp_url).map_err(Error::AmqpUrl)?;
    let instance = config.instance_name();
    let topology = Topology {
        exchange: config.exchange.clone(),
        history_queue: config.history_queue.clone(),
        retention: Retention {
            max_age: config.history_max_age.clone(),
            max_bytes: config.history_max_bytes,
            segment_bytes: config.history_segment_bytes,
        },
        replicas: config.history_replicas,
    };
    // With a spool the gateway is useful without a broker, so it starts anyway.
    let spool = config
        .spool_dir
        .as_ref()
        .map(|dir| {
            Spool::open(SpoolSettings {
                dir: dir.clone(),
                max_bytes: config.spool_max_bytes,
                segment_bytes: (config.spool_max_bytes / 4).clamp(64 << 10, SPOOL_SEGMENT_BYTES),
            })
            .map(Arc::new)
            .map_err(|error| Error::Spool(dir.display().to_string(), error))
        })
        .transpose()?;
    let broker_required = spool.is_none();
    // Publishing and consuming use separate connections: a blocked publisher
    // connection must not stop tails.
    let (publisher, source) = tokio::try_join!(
        Publisher::connect(
            endpoint.clone(),
            format!("loggate {instance} publish"),
            (config.broker_wait, broker_required),
            topology,
            PublisherSettings {
                channels: usize::from(config.publish_channels),
                timeout: config.publish_timeout,
                batch_records: config.amqp_batch_records as usize,
                max_inflight: config.max_inflight as usize,
            },
        ),
        StreamSource::connect(
            endpoint.clone(),
            format!("loggate {instance} tail"),
            (config.broker_wait, broker_required),
            &config.history_queue,
            config.tail_prefetch,
        ),
    )?;
    let (publisher, source) = (Arc::new(publisher), Arc::new(source));
    let ingest = Arc::new(Ingest::new(Arc::clone(&publisher), spool.clone()));

    let stop = CancellationToken::new();
    let (reporter, health_service) = tonic_health::server::health_reporter();
    let health = tokio::spawn(report_health(
        reporter.clone(),
        publisher.connected(),
        source.connected(),
        stop.clone(),
    ));

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
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;

    let gateway = Gateway::new(
        ingest,
        Arc::clone(&source),
        GatewaySettings {
            instance: instance.clone(),
            limits: Limits {
                max_message_bytes: usize::try_from(config.max_message_bytes).unwrap_or(usize::MAX),
            },
            max_batch: config.max_batch as usize,
            tail_buffer: usize::from(config.tail_buffer),
            stream_inflight: config.stream_inflight as usize,
            max_tails: config.max_tails as usize,
            tail_hub_queue: config.tail_hub_queue as usize,
            tail_heartbeat: config.tail_heartbeat,
            tail_resume_wait: config.tail_resume_wait,
        },
        stop.clone(),
    );
    let gateway = LogGatewayServer::new(gateway).max_decoding_message_size(MAX_REQUEST_BYTES);

    // Last of the set-up steps that can fail, so no drainer outlives a
    // failed start.
    if let Some(spool) = &spool {
        spool.start_draining(Arc::clone(&publisher));
    }
    let address = listener.local_addr().ok();
    // Without TCP_NODELAY a response's frames wait for the client's delayed
    // ACK (Nagle): 40 ms per pipelined call. Keepalive notices vanished peers.
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
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(gateway)
        .serve_with_incoming_shutdown(incoming, stop.clone().cancelled_owned());
    tokio::pin!(serving);
    info!(address = %address.map_or_else(|| "?".to_owned(), |a| a.to_string()), %instance, broker = %endpoint, exchange = %config.exchange, history = %config.history_queue, "serving");

    let served = tokio::select! {
        served = &mut serving => served,
        () = shutdown => {
            info!("shutting down: no new calls, ending tails, finishing open calls");
            stop.cancel();
            match tokio::time::timeout(config.shutdown_grace, &mut serving).await {
                Ok(served) => served,
                Err(_) => {
                    warn!(grace = ?config.shutdown_grace, "open calls did not finish in time; closing anyway");
                    Ok(())
                }
            }
        }
    };
    stop.cancel();
    let _ = health.await;
    // The drainer publishes, so it stops (and syncs its cursor) first.
    if let Some(spool) = &spool {
        spool.close().await;
    }
    tokio::join!(publisher.close(), source.close());
    info!("stopped");
    Ok(served?)
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
