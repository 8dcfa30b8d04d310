//! The operator's HTTP listener (`--metrics-listen`): `/metrics` (the
//! Prometheus text format), `/healthz` (200 while the process runs) and
//! `/readyz` (200 while gRPC health says SERVING, 503 otherwise).
//!
//! Apart from gRPC on purpose: its own listener and its own tasks, so an
//! HTTP client, however hostile, costs the gRPC side nothing but a little
//! CPU. It is kept small and bounded: HTTP/1.1 only, at most
//! [`MAX_CONNECTIONS`] at once (more are closed at accept), a request head of
//! at most 16 KiB (larger: 431), read within 5 s, and a connection lives at
//! most 60 s. [`serve`] takes any axum `Router`, its [`Bounds`] and optional
//! TLS, so the web page's listener (`web`) is served by the same loop with
//! bounds of its own.

use std::{sync::Arc, time::Duration};

use axum::{
    extract::State,
    http::{header, StatusCode},
    response::IntoResponse,
    routing::get,
    Router,
};
use hyper::server::conn::http1;
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::{
    net::TcpListener,
    sync::{watch, Semaphore},
    task::JoinSet,
};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::metrics;
use crate::tls::ServerTls;

/// Connections served at once; a new one past it is closed at once. Enough
/// for several scrapers and probes; a client that opens more only locks
/// itself (and other HTTP clients) out, never gRPC.
pub const MAX_CONNECTIONS: usize = 32;
/// A request head must arrive within this, or the connection is closed.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest life of one connection, keep-alive included.
const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// A TLS client that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// What one listener allows: how many connections at once, and how long each.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub max_connections: usize,
    /// A connection is closed after this, whatever it is doing.
    pub connection_lifetime: Duration,
}

/// The metrics listener's bounds.
pub const OPERATOR: Bounds = Bounds {
    max_connections: MAX_CONNECTIONS,
    connection_lifetime: CONNECTION_LIFETIME,
};
/// The read buffer, which bounds a request head (hyper's minimum is 8 KiB).
const MAX_REQUEST_HEAD_BYTES: usize = 16 * 1024;
/// Pause after a failed accept (out of file descriptors), so as not to spin.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// What the probe routes report on.
#[derive(Clone)]
pub struct Probes {
    /// `true` while the gateway is SERVING, as gRPC health reports it.
    pub ready: watch::Receiver<bool>,
    /// Brings the sampled gauges up to date; called before each render.
    pub sample: Arc<dyn Fn() + Send + Sync>,
}

/// `/metrics`, `/healthz` and `/readyz`.
pub fn routes(probes: Probes) -> Router {
    Router::new()
        .route("/metrics", get(render_metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(probes)
}

async fn render_metrics(State(probes): State<Probes>) -> impl IntoResponse {
    (probes.sample)();
    (
        [(header::CONTENT_TYPE, metrics::CONTENT_TYPE)],
        metrics::render(),
    )
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(probes): State<Probes>) -> (StatusCode, &'static str) {
    if *probes.ready.borrow() {
        (StatusCode::OK, "serving\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not serving\n")
    }
}

/// Serves `routes` on `listener` (over TLS when given) within `bounds` until
/// `stop` is cancelled, then closes every connection.
pub async fn serve(
    listener: TcpListener,
    routes: Router,
    bounds: Bounds,
    tls: Option<Arc<ServerTls>>,
    stop: CancellationToken,
) {
    let places = Arc::new(Semaphore::new(bounds.max_connections));
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                debug!(%error, "accepting an HTTP connection failed");
                tokio::time::sleep(ACCEPT_PAUSE).await;
                continue;
            }
        };
        let Ok(place) = Arc::clone(&places).try_acquire_owned() else {
            debug!(
                limit = bounds.max_connections,
                "too many HTTP connections; closing a new one"
            );
            continue;
        };
        let _ = stream.set_nodelay(true);
        let routes = routes.clone();
        let tls = tls.as_ref().map(|tls| tls.http1_acceptor());
        connections.spawn(async move {
            // The handshake counts against the connection's lifetime too.
            let _ = tokio::time::timeout(bounds.connection_lifetime, async move {
                match tls {
                    None => serve_connection(stream, routes).await,
                    Some(acceptor) => {
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                        {
                            Ok(Ok(stream)) => serve_connection(stream, routes).await,
                            Ok(Err(error)) => debug!(%error, "TLS handshake failed"),
                            Err(_) => debug!("TLS handshake timed out"),
                        }
                    }
                }
            })
            .await;
            drop(place);
        });
    }
    connections.shutdown().await;
}

/// HTTP/1.1 on one connection, its request heads bounded in size and time.
async fn serve_connection<S>(stream: S, routes: Router)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_REQUEST_HEAD_BYTES);
    let service = TowerToHyperService::new(routes);
    if let Err(error) = builder
        .serve_connection(TokioIo::new(stream), service)
        .await
    {
        debug!(%error, "an HTTP connection failed");
    }
}
