//! Assembles the gateway, in the steps that `run` names: secure (the auth
//! file and TLS, checked before anything connects), connect (spool and
//! broker connections), build the services (LogGateway behind
//! authentication, health, reflection), serve, shut down in order.

use std::{future::Future, net::SocketAddr, sync::Arc, time::Duration};

use futures::future::Either;

use tokio::{net::TcpListener, sync::watch};
use tokio_util::sync::CancellationToken;
use tonic::{
    body::Body,
    codec::CompressionEncoding,
    codegen::{http, Context, Poll, Service},
    server::NamedService,
    service::{interceptor::InterceptedService, Routes},
    transport::{server::TcpIncoming, Server},
};
use tonic_health::{server::HealthReporter, ServingStatus};
use tracing::{info, warn};

mod observe;
mod security;

use crate::api::{Authenticate, Gateway, GatewaySettings, TailService, TAIL_PATH};
use crate::auth::{self, Auth};
use crate::broker::{self, Brokers, FirstConnect, Publisher, StreamSource};
use crate::config::{LimitsArgs, ServeConfig};
use crate::ingest::Ingest;
use crate::proto::otlp::collector::logs_service_server::LogsServiceServer;
use crate::proto::{self, v1::log_gateway_server::LogGatewayServer};
use crate::spool::{self, Spool};
use crate::tls::{self, ServerTls};

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
    /// The broker flags (`--amqp-url`, `--amqp-url-file`, the TLS flags);
    /// the message names the flag.
    #[error("{0}")]
    AmqpUrl(String),
    #[error(transparent)]
    Broker(#[from] broker::Error),
    #[error("--spool-dir {0}: {1}")]
    Spool(String, #[source] spool::Error),
    #[error("building server reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error(transparent)]
    Auth(#[from] auth::Error),
    #[error("--tls-cert: {0}")]
    Tls(#[from] tls::Error),
    #[error(
        "refusing to serve without authentication on {0}, which is not a loopback address: \
         give --auth-file FILE (see `loggate token new`), or --allow-unauthenticated to accept \
         anyone who can reach the port"
    )]
    Unprotected(String),
    #[error("--metrics-listen {0}: {1}")]
    MetricsListen(SocketAddr, #[source] std::io::Error),
    #[error("--http-listen {0}: {1}")]
    HttpListen(SocketAddr, #[source] std::io::Error),
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
    let security = security::secure(&config, listener.local_addr().ok())?;
    let observer = observe::Observer::start(&config, &security).await?;
    let backends = connect(&config, &instance).await?;
    observer.watch(&backends);
    let stop = CancellationToken::new();
    let (routes, health, gateway) = build_services(
        &config,
        &backends,
        security.auth.clone(),
        instance.clone(),
        stop.clone(),
    )?;
    observer.serve_web(&gateway);
    let reloading = tokio::spawn(security::reload_on_hangup(security.clone(), stop.clone()));
    let reporting = tokio::spawn(report_health(
        health,
        Upstream {
            publishing: backends.publisher.connected(),
            consuming: backends.source.connected(),
            draining: backends.spool.as_ref().map(|spool| spool.drainer_up()),
        },
        observer.ready.clone(),
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
        security.tls,
        routes,
        &config.limits,
        shutdown,
        config.server.shutdown_grace,
        &stop,
    )
    .await;
    stop.cancel();
    let _ = tokio::join!(reporting, reloading);
    shut_down(backends).await;
    observer.stop().await;
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
    let brokers = config.rabbitmq.brokers().map_err(Error::AmqpUrl)?;
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
            config.tails.tail_channels,
        ),
    )?;
    Ok(Backends {
        brokers,
        spool,
        publisher: Arc::new(publisher),
        source: Arc::new(source),
    })
}

/// Step 2: the gRPC services, the health reporter that `report_health`
/// keeps current, and the gateway the web page tails through. The LogGateway service is behind authentication; health
/// and reflection stay open (load balancers and grpcurl need them).
fn build_services(
    config: &ServeConfig,
    backends: &Backends,
    auth: Option<Arc<Auth>>,
    instance: String,
    stop: CancellationToken,
) -> Result<(Routes, HealthReporter, Arc<Gateway>), Error> {
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
            quotas: config.limits.quotas(),
        },
        stop,
    );
    let gateway = Arc::new(gateway);
    let web = Arc::clone(&gateway);
    let authenticate = Authenticate::new(auth);
    // OTLP/gRPC logs in: the same gateway behind the same authentication.
    let otlp = InterceptedService::new(
        LogsServiceServer::from_arc(Arc::clone(&gateway))
            // The Collector's otlp exporter compresses by default. tonic
            // bounds the inflated size by the same limit, so a small
            // compressed request cannot inflate past it.
            .accept_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(MAX_REQUEST_BYTES),
        authenticate.clone(),
    );
    let gateway = TailApart {
        tail: InterceptedService::new(TailService::new(Arc::clone(&gateway)), authenticate.clone()),
        other: InterceptedService::new(
            LogGatewayServer::from_arc(gateway)
                .accept_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(MAX_REQUEST_BYTES),
            authenticate,
        ),
    };

    // grpcurl 1.8 speaks only v1alpha; newer tools speak v1. Each version's
    // listing names every service served: ours, health, and both reflections
    // (a builder only registers its own version unless told otherwise).
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .include_reflection_service(false)
            .register_encoded_file_descriptor_set(proto::FILE_DESCRIPTOR_SET)
            .register_file_descriptor_set(proto::otlp::logs_file_descriptor_set())
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
        .add_service(gateway)
        .add_service(otlp);
    Ok((routes, reporter, web))
}

/// The LogGateway service: Tail calls go to the hand-written Tail service
/// (records encoded once for all followers, a small request bound), the
/// rest to tonic's generated server, which takes a full batch.
#[derive(Clone)]
struct TailApart<T, O> {
    tail: T,
    other: O,
}

impl<T, O: NamedService> NamedService for TailApart<T, O> {
    const NAME: &'static str = O::NAME;
}

impl<T, O> Service<http::Request<Body>> for TailApart<T, O>
where
    T: Service<http::Request<Body>> + Clone,
    O: Service<http::Request<Body>, Response = T::Response, Error = T::Error> + Clone,
{
    type Response = T::Response;
    type Error = T::Error;
    type Future = Either<T::Future, O::Future>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Both are always ready (tonic's generated server, and TailService,
        // behind an interceptor).
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if request.uri().path() == TAIL_PATH {
            Either::Left(self.tail.clone().call(request))
        } else {
            Either::Right(self.other.clone().call(request))
        }
    }
}

/// Step 3: serves `routes` on `listener` until `shutdown` resolves, then
/// stops accepting (cancelling `stop` ends tails) and gives open calls
/// `grace` to finish. Each connection gets `--max-streams-per-connection`,
/// HTTP/2 keepalive pings and, if asked, a maximum age.
async fn serve(
    listener: TcpListener,
    tls: Option<Arc<ServerTls>>,
    routes: Routes,
    limits: &LimitsArgs,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
    stop: &CancellationToken,
) -> Result<(), tonic::transport::Error> {
    // Without TCP_NODELAY a response's frames wait for the client's delayed
    // ACK (Nagle): 40 ms per pipelined call. Keepalive notices vanished peers.
    let incoming = TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(TCP_KEEPALIVE));
    let mut server = Server::builder()
        // Every call is an HTTP/2 stream, so this is also the connection's
        // concurrency limit (tonic's own per-connection limit counts a
        // streaming call only until it answers its headers). Without it one
        // connection could open every --max-tails place.
        .max_concurrent_streams(Some(limits.max_streams_per_connection))
        // Finds peers that vanished behind a NAT or load balancer without a
        // FIN (TCP keepalive takes minutes more); a tail may be quiet for long.
        .http2_keepalive_interval(Some(limits.http2_keepalive_interval))
        .http2_keepalive_timeout(Some(limits.http2_keepalive_timeout));
    if let Some(age) = limits.max_connection_age {
        server = server.max_connection_age(age);
    }
    let server = server
        // Flow control is LogStream's backpressure: a window of 256 KiB per
        // stream (about a thousand typical records) keeps what a stream can
        // park in the gateway small, and is still far above the bandwidth-delay
        // product of a data-centre link. hyper's default is 1 MiB.
        .initial_stream_window_size(Some(STREAM_WINDOW_BYTES))
        .initial_connection_window_size(Some(CONNECTION_WINDOW_BYTES))
        .add_routes(routes);
    let stopped = stop.clone().cancelled_owned();
    // With TLS the server sees connections only once their handshake is done.
    let serving: std::pin::Pin<Box<dyn Future<Output = _> + Send>> = match tls {
        Some(tls) => Box::pin(
            server.serve_with_incoming_shutdown(tls.incoming(incoming, stop.clone()), stopped),
        ),
        None => Box::pin(server.serve_with_incoming_shutdown(incoming, stopped)),
    };
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

/// What health reports on: each is `true` while that part works.
struct Upstream {
    /// The publish connection is up and not blocked.
    publishing: watch::Receiver<bool>,
    /// The tail connection is up.
    consuming: watch::Receiver<bool>,
    /// The spool's drainer runs (`None`: no spool).
    draining: Option<watch::Receiver<bool>>,
}

/// SERVING while both broker connections are up and the spool's drainer (if
/// any) runs; NOT_SERVING otherwise and from the moment shutdown begins.
/// `ready` (what the HTTP `/readyz` reports) always says the same.
async fn report_health(
    reporter: HealthReporter,
    upstream: Upstream,
    ready: watch::Sender<bool>,
    stop: CancellationToken,
) {
    let Upstream {
        mut publishing,
        mut consuming,
        mut draining,
    } = upstream;
    loop {
        let drainer_up = draining
            .as_mut()
            .is_none_or(|draining| *draining.borrow_and_update());
        let up = *publishing.borrow_and_update() && *consuming.borrow_and_update() && drainer_up;
        let status = if up {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        ready.send_replace(up);
        for service in ["", SERVICE_NAME] {
            reporter.set_service_status(service, status).await;
        }
        tokio::select! {
            changed = publishing.changed() => if changed.is_err() { break },
            changed = consuming.changed() => if changed.is_err() { break },
            Some(changed) = changed_if_any(&mut draining) => if changed.is_err() { break },
            () = stop.cancelled() => break,
        }
    }
    ready.send_replace(false);
    for service in ["", SERVICE_NAME] {
        reporter
            .set_service_status(service, ServingStatus::NotServing)
            .await;
    }
}

/// `changed()` on a watch that may be absent: `None` at once if it is.
async fn changed_if_any(
    watch: &mut Option<watch::Receiver<bool>>,
) -> Option<Result<(), watch::error::RecvError>> {
    match watch {
        Some(watch) => Some(watch.changed().await),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use tonic_health::pb::{health_check_response::ServingStatus as Wire, health_server::Health};
    use tonic_health::server::HealthService;

    use super::*;

    async fn overall(health: &HealthService) -> Wire {
        let request = tonic::Request::new(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        });
        let response = health.check(request).await.expect("reported");
        Wire::try_from(response.into_inner().status).expect("a status")
    }

    #[tokio::test]
    async fn health_says_not_serving_while_the_spool_drainer_is_down() {
        let reporter = HealthReporter::new();
        let health = HealthService::from_health_reporter(reporter.clone());
        let (_publishing, publishing) = watch::channel(true);
        let (_consuming, consuming) = watch::channel(true);
        let (draining, drainer_up) = watch::channel(true);
        let stop = CancellationToken::new();
        let upstream = Upstream {
            publishing,
            consuming,
            draining: Some(drainer_up),
        };
        let (ready, readiness) = watch::channel(false);
        let reporting = tokio::spawn(report_health(reporter, upstream, ready, stop.clone()));
        for (up, expected) in [
            (true, Wire::Serving),
            (false, Wire::NotServing),
            (true, Wire::Serving),
        ] {
            draining.send_replace(up);
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            // `readiness` (/readyz) follows health.
            while overall(&health).await != expected || *readiness.borrow() != up {
                assert!(tokio::time::Instant::now() < deadline, "never {expected:?}");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        stop.cancel();
        reporting.await.expect("reporter");
        assert_eq!(overall(&health).await, Wire::NotServing, "shutting down");
        assert!(!*readiness.borrow(), "/readyz says 503 while shutting down");
    }
}
