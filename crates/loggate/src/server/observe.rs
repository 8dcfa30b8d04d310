//! The `--metrics-listen` listener in the gateway's life: bound before the
//! gateway connects (a bad address fails the start at once, and `/healthz`
//! answers while RabbitMQ is awaited, `/readyz` saying 503), and serving
//! until the gateway has shut down, so `/readyz` says 503 all through the
//! shutdown.

use std::sync::{Arc, OnceLock};

use tokio::{net::TcpListener, sync::watch, task::JoinHandle};
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::info;

use super::{Backends, Error};
use crate::broker::Publisher;
use crate::config::ServeConfig;
use crate::spool::Spool;
use crate::{http, metrics};

/// The HTTP listener, if asked for, and what `/readyz` reports.
pub(super) struct Observer {
    /// Kept equal to gRPC health's overall status by `report_health`.
    pub ready: watch::Sender<bool>,
    /// What the sampled gauges are read from, once connected.
    sampled: Arc<OnceLock<Sampled>>,
    /// Running the HTTP server; `None` without `--metrics-listen`.
    serving: Option<(JoinHandle<()>, DropGuard)>,
}

/// The parts of a gateway whose state is read at each scrape.
struct Sampled {
    publisher: Arc<Publisher>,
    spool: Option<Arc<Spool>>,
}

impl Observer {
    /// Starts recording metrics and serving them, if `--metrics-listen` says so.
    pub async fn start(config: &ServeConfig) -> Result<Observer, Error> {
        let (ready, readiness) = watch::channel(false);
        let sampled: Arc<OnceLock<Sampled>> = Arc::default();
        let Some(address) = config.observability.metrics_listen else {
            return Ok(Observer {
                ready,
                sampled,
                serving: None,
            });
        };
        let listener = TcpListener::bind(address)
            .await
            .map_err(|error| Error::MetricsListen(address, error))?;
        metrics::enable();
        let bound = listener.local_addr().unwrap_or(address);
        let sample = {
            let sampled = Arc::clone(&sampled);
            move || {
                if let Some(Sampled { publisher, spool }) = sampled.get() {
                    metrics::sample_publish_inflight(publisher.inflight());
                    if let Some(spool) = spool {
                        metrics::sample_spool(spool.pending_records(), spool.pending_bytes());
                    }
                }
            }
        };
        let routes = http::routes(http::Probes {
            ready: readiness,
            sample: Arc::new(sample),
        });
        let stop = CancellationToken::new();
        let task = tokio::spawn(http::serve(listener, routes, stop.clone()));
        info!(address = %bound, "serving metrics on /metrics, probes on /healthz and /readyz");
        Ok(Observer {
            ready,
            sampled,
            serving: Some((task, stop.drop_guard())),
        })
    }

    /// From now on, scrapes sample `backends`.
    pub fn watch(&self, backends: &Backends) {
        let _ = self.sampled.set(Sampled {
            publisher: Arc::clone(&backends.publisher),
            spool: backends.spool.clone(),
        });
    }

    /// Stops the HTTP server and waits for it.
    pub async fn stop(self) {
        if let Some((task, stop)) = self.serving {
            drop(stop);
            let _ = task.await;
        }
    }
}
