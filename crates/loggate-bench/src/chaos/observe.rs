//! Watching the gateway through the run: its health and memory, and a live
//! tail of the run's records.

use std::{
    collections::HashSet,
    sync::{
        atomic::{AtomicU32, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::{health_check_response::ServingStatus, health_client::HealthClient};

use loggate::proto::v1::{self as pb, log_gateway_client::LogGatewayClient};

use crate::error::Error;
use crate::process::ProcStat;

/// How often the gateway's health and memory are sampled.
pub(super) const SAMPLE_EVERY: Duration = Duration::from_millis(50);

/// Samples the gateway's health and memory in the background. The sampler
/// owns what it learns and publishes it (a watch channel, atomics), so
/// nothing is shared behind a lock.
pub(super) struct Watch {
    /// The gateway process to sample: a new one after kill-gateway.
    pid: Arc<AtomicU32>,
    /// Highest VmHWM seen, over every gateway process of the run.
    peak_rss: Arc<AtomicU64>,
    health: watch::Receiver<Health>,
    task: JoinHandle<()>,
}

/// The gateway's health as last sampled.
#[derive(Debug, Clone, Copy, Default)]
struct Health {
    serving: bool,
    /// The last time it was seen SERVING after not being so.
    serving_since: Option<Instant>,
}

impl Watch {
    pub fn start(url: &str, pid: u32) -> Watch {
        let pid = Arc::new(AtomicU32::new(pid));
        let peak_rss = Arc::new(AtomicU64::new(0));
        let (publish, health) = watch::channel(Health::default());
        let channel = Endpoint::from_shared(url.to_owned())
            .expect("the gateway's URL is valid")
            .connect_timeout(Duration::from_millis(500))
            .timeout(Duration::from_secs(1))
            .connect_lazy();
        let task = tokio::spawn(sample(
            Arc::clone(&pid),
            Arc::clone(&peak_rss),
            publish,
            channel,
        ));
        Watch {
            pid,
            peak_rss,
            health,
            task,
        }
    }

    pub fn follow(&self, pid: u32) {
        self.pid.store(pid, Ordering::Relaxed);
    }

    pub fn note_rss(&self, bytes: u64) {
        self.peak_rss.fetch_max(bytes, Ordering::Relaxed);
    }

    /// The first moment at or after `since` when the gateway was SERVING,
    /// waiting up to `wait` for it.
    pub async fn serving_after(&self, since: Instant, wait: Duration) -> Option<Instant> {
        let deadline = Instant::now() + wait;
        loop {
            let health = *self.health.borrow();
            match health.serving_since {
                Some(at) if at >= since => return Some(at),
                // Serving throughout: it never noticed the fault.
                Some(_) if health.serving => return Some(since),
                _ => {}
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(SAMPLE_EVERY).await;
        }
    }

    /// Stops sampling; returns the peak RSS.
    pub fn stop(self) -> u64 {
        self.task.abort();
        self.peak_rss.load(Ordering::Relaxed)
    }
}

async fn sample(
    pid: Arc<AtomicU32>,
    peak_rss: Arc<AtomicU64>,
    publish: watch::Sender<Health>,
    channel: Channel,
) {
    let mut health = HealthClient::new(channel);
    loop {
        let status = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            })
            .await
            .map(|r| r.into_inner().status);
        let now = Instant::now();
        let serving = status.is_ok_and(|s| s == ServingStatus::Serving as i32);
        publish.send_modify(|health| {
            if serving && !health.serving {
                health.serving_since = Some(now);
            }
            health.serving = serving;
        });
        if let Some(stat) = ProcStat::read(pid.load(Ordering::Relaxed)) {
            peak_rss.fetch_max(stat.peak_rss_bytes, Ordering::Relaxed);
        }
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
}

/// A live Tail of the run's records. Its task sends each record's id
/// over a channel and returns how the tail ended, so nothing is shared.
pub(super) struct Follower {
    ids: mpsc::UnboundedReceiver<String>,
    task: JoinHandle<String>,
}

/// What the follower saw of the acknowledged records.
pub(super) struct Followed {
    pub missing: u64,
    /// The status the tail ended with, if it did.
    pub ended: Option<String>,
}

impl Follower {
    pub async fn start(url: &str) -> Result<Follower, Error> {
        let channel = Endpoint::from_shared(url.to_owned())
            .map_err(|e| Error::Gateway(e.to_string()))?
            .connect()
            .await
            .map_err(|e| Error::Gateway(format!("cannot reach {url}: {e}")))?;
        let mut stream = LogGatewayClient::new(channel)
            .tail(pb::TailRequest {
                services: vec!["chaos".into()],
                ..Default::default()
            })
            .await
            .map_err(|status| Error::Gateway(format!("Tail: {}", status.message())))?
            .into_inner();
        // Unbounded: the follower must never slow the tail it measures.
        let (send, ids) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                match stream.message().await {
                    Ok(Some(response)) => {
                        if let Some(pb::tail_response::Event::Record(record)) = response.event {
                            // Nobody is counting any more: `finish` is done.
                            if send.send(record.id).is_err() {
                                return "the follower stopped".to_owned();
                            }
                        }
                    }
                    Ok(None) => return "the stream ended".to_owned(),
                    Err(status) => return format!("{:?}: {}", status.code(), status.message()),
                }
            }
        });
        Ok(Follower { ids, task })
    }

    /// Waits (a bounded while) until the tail has seen every acked record or
    /// has ended, then stops it.
    pub async fn finish(mut self, acked: &[String]) -> Followed {
        let mut unseen: HashSet<&str> = acked.iter().map(String::as_str).collect();
        let mut seen = HashSet::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        while !unseen.is_empty() {
            // `None`: the tail ended, and every id it saw has been read.
            let Ok(Some(id)) = tokio::time::timeout_at(deadline, self.ids.recv()).await else {
                break;
            };
            unseen.remove(id.as_str());
            seen.insert(id);
        }
        let ended = if self.task.is_finished() {
            self.task.await.ok()
        } else {
            self.task.abort();
            None
        };
        // Ids that arrived but were not read before the deadline were seen too.
        while let Ok(id) = self.ids.try_recv() {
            seen.insert(id);
        }
        Followed {
            missing: acked.iter().filter(|id| !seen.contains(*id)).count() as u64,
            ended,
        }
    }
}
