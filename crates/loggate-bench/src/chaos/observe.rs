//! Watching the gateway through the run: its health and memory, and a live
//! tail of the run's records.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::{health_check_response::ServingStatus, health_client::HealthClient};

use super::lock;
use loggate::proto::v1::{self as pb, log_gateway_client::LogGatewayClient};

use crate::error::Error;
use crate::process::ProcStat;

/// How often the gateway's health and memory are sampled.
pub(super) const SAMPLE_EVERY: Duration = Duration::from_millis(50);

/// Samples the gateway's health and memory in the background.
pub(super) struct Watch {
    inner: Arc<Mutex<Watched>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct Watched {
    pid: u32,
    /// Highest VmHWM seen, over every gateway process of the run.
    peak_rss: u64,
    /// Each time the gateway was seen SERVING after not being so.
    serving_since: Vec<Instant>,
    serving: bool,
}

impl Watch {
    pub fn start(url: &str, pid: u32) -> Watch {
        let inner = Arc::new(Mutex::new(Watched {
            pid,
            ..Watched::default()
        }));
        let channel = Endpoint::from_shared(url.to_owned())
            .expect("the gateway's URL is valid")
            .connect_timeout(Duration::from_millis(500))
            .timeout(Duration::from_secs(1))
            .connect_lazy();
        let task = tokio::spawn(sample(Arc::clone(&inner), channel));
        Watch { inner, task }
    }

    pub fn follow(&self, pid: u32) {
        lock(&self.inner).pid = pid;
    }

    pub fn note_rss(&self, bytes: u64) {
        let mut watched = lock(&self.inner);
        watched.peak_rss = watched.peak_rss.max(bytes);
    }

    /// The first moment at or after `since` when the gateway was SERVING,
    /// waiting up to `wait` for it.
    pub async fn serving_after(&self, since: Instant, wait: Duration) -> Option<Instant> {
        let deadline = Instant::now() + wait;
        loop {
            {
                let watched = lock(&self.inner);
                if let Some(at) = watched.serving_since.iter().rev().find(|&&at| at >= since) {
                    return Some(*at);
                }
                // Serving throughout: it never noticed the fault.
                if watched.serving && watched.serving_since.last().is_some_and(|&at| at < since) {
                    return Some(since);
                }
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
        lock(&self.inner).peak_rss
    }
}

async fn sample(inner: Arc<Mutex<Watched>>, channel: Channel) {
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
        {
            let mut watched = lock(&inner);
            if serving && !watched.serving {
                watched.serving_since.push(now);
            }
            watched.serving = serving;
            if let Some(stat) = ProcStat::read(watched.pid) {
                watched.peak_rss = watched.peak_rss.max(stat.peak_rss_bytes);
            }
        }
        tokio::time::sleep(SAMPLE_EVERY).await;
    }
}

/// A live Tail of the run's records, collecting their ids.
pub(super) struct Follower {
    seen: Arc<Mutex<HashSet<String>>>,
    ended: Arc<Mutex<Option<String>>>,
    task: tokio::task::JoinHandle<()>,
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
        let seen = Arc::new(Mutex::new(HashSet::new()));
        let ended = Arc::new(Mutex::new(None));
        let task = {
            let (seen, ended) = (Arc::clone(&seen), Arc::clone(&ended));
            tokio::spawn(async move {
                loop {
                    match stream.message().await {
                        Ok(Some(response)) => {
                            if let Some(pb::tail_response::Event::Record(record)) = response.event {
                                lock(&seen).insert(record.id);
                            }
                        }
                        Ok(None) => {
                            *lock(&ended) = Some("the stream ended".to_owned());
                            return;
                        }
                        Err(status) => {
                            *lock(&ended) =
                                Some(format!("{:?}: {}", status.code(), status.message()));
                            return;
                        }
                    }
                }
            })
        };
        Ok(Follower { seen, ended, task })
    }

    /// Waits (a bounded while) until the tail has seen every acked record or
    /// has ended, then stops it.
    pub async fn finish(self, acked: &[String]) -> Followed {
        let missing = || {
            let seen = lock(&self.seen);
            acked.iter().filter(|id| !seen.contains(*id)).count() as u64
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        while missing() > 0 && lock(&self.ended).is_none() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.task.abort();
        Followed {
            missing: missing(),
            ended: lock(&self.ended).clone(),
        }
    }
}
