//! The HTTP listeners in the gateway's life, `--metrics-listen` and
//! `--http-listen` (the web page): bound before the gateway connects (a bad
//! address fails the start at once, and `/healthz` answers while RabbitMQ is
//! awaited, `/readyz` saying 503, the web API 503 too), and serving until the
//! gateway has shut down, so `/readyz` says 503 all through the shutdown.
//!
//! When both flags name the same address, one listener serves both route
//! sets (two could not bind it), with the web page's bounds and TLS.

use std::sync::{Arc, OnceLock};

use tokio::{net::TcpListener, sync::watch, task::JoinHandle};
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::info;

use super::{security::Security, Backends, Error};
use crate::api::Gateway;
use crate::broker::Publisher;
use crate::config::ServeConfig;
use crate::spool::Spool;
use crate::web::{self, Web};
use crate::{http, metrics};

/// The web listener's bounds: a page holds one long-lived tail and makes a
/// few short requests, and many people may open it; each tail is further
/// bounded by `--max-tails` and the per-principal quotas. A connection
/// lives at most ten minutes: the page then reconnects with its resume
/// token, losing nothing, and no connection holds its place for ever.
const WEB: http::Bounds = http::Bounds {
    max_connections: 256,
    connection_lifetime: std::time::Duration::from_secs(600),
};

/// The HTTP listener, if asked for, and what `/readyz` reports.
pub(super) struct Observer {
    /// Kept equal to gRPC health's overall status by `report_health`.
    pub ready: watch::Sender<bool>,
    /// What the sampled gauges are read from, once connected.
    sampled: Arc<OnceLock<Sampled>>,
    /// The HTTP servers running (none, one, or two: metrics and web apart).
    serving: Vec<(JoinHandle<()>, DropGuard)>,
    /// The web routes' state, told of the gateway once it is built.
    web: Option<Web>,
}

/// The parts of a gateway whose state is read at each scrape.
struct Sampled {
    publisher: Arc<Publisher>,
    spool: Option<Arc<Spool>>,
}

impl Observer {
    /// Starts recording metrics and serving them, and the web page, if
    /// `--metrics-listen` and `--http-listen` say so.
    pub async fn start(config: &ServeConfig, security: &Security) -> Result<Observer, Error> {
        let (ready, readiness) = watch::channel(false);
        let sampled: Arc<OnceLock<Sampled>> = Arc::default();
        let mut observer = Observer {
            ready,
            sampled: Arc::clone(&sampled),
            serving: Vec::new(),
            web: None,
        };
        let metrics_at = config.observability.metrics_listen;
        let web_at = config.server.http_listen;
        let metrics_routes = metrics_at.map(|_| {
            metrics::enable();
            let sample = move || {
                if let Some(Sampled { publisher, spool }) = sampled.get() {
                    metrics::sample_publish_inflight(publisher.inflight());
                    if let Some(spool) = spool {
                        metrics::sample_spool(spool.pending_records(), spool.pending_bytes());
                    }
                }
            };
            http::routes(http::Probes {
                ready: readiness,
                sample: Arc::new(sample),
            })
        });
        if let Some(address) = web_at {
            let listener = TcpListener::bind(address)
                .await
                .map_err(|error| Error::HttpListen(address, error))?;
            let bound = listener.local_addr().unwrap_or(address);
            let state = Web::new(security.auth.clone(), bound);
            let mut routes = web::routes(state.clone());
            let shared = metrics_at == Some(address);
            if shared {
                routes = routes.merge(metrics_routes.clone().expect("metrics are on"));
            }
            observer.spawn(listener, routes, WEB, security.tls.clone());
            observer.web = Some(state);
            let scheme = if security.tls.is_some() {
                "https"
            } else {
                "http"
            };
            info!(url = %format!("{scheme}://{bound}/"), with_metrics = shared, "serving the web page");
            if shared {
                return Ok(observer);
            }
        }
        if let (Some(address), Some(routes)) = (metrics_at, metrics_routes) {
            let listener = TcpListener::bind(address)
                .await
                .map_err(|error| Error::MetricsListen(address, error))?;
            let bound = listener.local_addr().unwrap_or(address);
            observer.spawn(listener, routes, http::OPERATOR, None);
            info!(address = %bound, "serving metrics on /metrics, probes on /healthz and /readyz");
        }
        Ok(observer)
    }

    fn spawn(
        &mut self,
        listener: TcpListener,
        routes: axum::Router,
        bounds: http::Bounds,
        tls: Option<Arc<crate::tls::ServerTls>>,
    ) {
        let stop = CancellationToken::new();
        let task = tokio::spawn(http::serve(listener, routes, bounds, tls, stop.clone()));
        self.serving.push((task, stop.drop_guard()));
    }

    /// From now on the web page serves tails from `gateway`.
    pub fn serve_web(&self, gateway: &Arc<Gateway>) {
        if let Some(web) = &self.web {
            web.serve(Arc::clone(gateway));
        }
    }

    /// From now on, scrapes sample `backends`.
    pub fn watch(&self, backends: &Backends) {
        let _ = self.sampled.set(Sampled {
            publisher: Arc::clone(&backends.publisher),
            spool: backends.spool.clone(),
        });
    }

    /// Stops the HTTP servers and waits for them.
    pub async fn stop(self) {
        for (task, stop) in self.serving {
            drop(stop);
            let _ = task.await;
        }
    }
}
