//! Load on the gateway: concurrent clients over a number of HTTP/2
//! connections (one each, or sharing fewer), in one of three modes. Collects
//! every acked id and the latency of every call.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use indicatif::ProgressBar;
use tokio::sync::mpsc;
use tokio_stream::{wrappers::ReceiverStream, StreamExt};

use loggate::proto::v1 as pb;
use loggate::sync::lock;

use crate::config::BenchMode;
use crate::connect::{Client, Target};
use crate::error::Error;

/// What to send.
pub struct Plan {
    pub mode: BenchMode,
    pub records: u64,
    /// Clients, each with one call in flight at a time.
    pub concurrency: usize,
    /// HTTP/2 connections the clients share (client i on connection i mod N).
    pub connections: usize,
    pub batch_size: usize,
    /// Requests one LogStream client keeps unanswered.
    pub stream_window: usize,
    /// Every record is a clone of this one.
    pub template: pb::LogRecord,
}

/// What came back.
#[derive(Default)]
pub struct Outcome {
    pub acked: Vec<String>,
    pub latencies: Vec<Duration>,
    pub elapsed: Duration,
    pub failed_calls: u64,
    pub first_failure: Option<String>,
}

pub async fn drive(target: &Target, plan: &Plan, progress: &ProgressBar) -> Result<Outcome, Error> {
    let remaining = Arc::new(AtomicU64::new(plan.records));
    let lanes = lanes(plan.concurrency, plan.connections);
    let mut connections = Vec::new();
    for _ in 0..lanes.iter().max().map_or(0, |last| last + 1) {
        connections.push(target.connect().await?);
    }
    // A clone of a client shares its connection: calls are multiplexed on it.
    let clients: Vec<Client> = lanes.iter().map(|&c| connections[c].clone()).collect();
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for client in clients {
        let remaining = Arc::clone(&remaining);
        let template = plan.template.clone();
        let progress = progress.clone();
        let (mode, batch, window) = (plan.mode, plan.batch_size as u64, plan.stream_window);
        workers.spawn(async move {
            match mode {
                BenchMode::Unary => calls(client, remaining, template, 1, progress).await,
                BenchMode::Batch => calls(client, remaining, template, batch, progress).await,
                BenchMode::Stream => {
                    stream(client, remaining, template, batch, window, progress).await
                }
                // Not ingest modes: `bench::run` hands them to `fanout`.
                BenchMode::Tail | BenchMode::Replay | BenchMode::Otlp => Outcome::default(),
            }
        });
    }
    gather(workers, started).await
}

/// The connection each of `clients` uses: client i on connection i mod
/// `connections` (at least one, at most one per client).
fn lanes(clients: usize, connections: usize) -> Vec<usize> {
    let connections = connections.clamp(1, clients.max(1));
    (0..clients).map(|i| i % connections).collect()
}

/// The client tasks' outcomes as one, timed from `started`.
pub(super) async fn gather(
    mut workers: tokio::task::JoinSet<Outcome>,
    started: Instant,
) -> Result<Outcome, Error> {
    let mut outcome = Outcome::default();
    while let Some(joined) = workers.join_next().await {
        let part = joined.map_err(|e| Error::Gateway(format!("a client task failed: {e}")))?;
        outcome.acked.extend(part.acked);
        outcome.latencies.extend(part.latencies);
        outcome.failed_calls += part.failed_calls;
        outcome.first_failure = outcome.first_failure.or(part.first_failure);
    }
    outcome.elapsed = started.elapsed();
    Ok(outcome)
}

/// Takes up to `n` records of the remaining budget; 0 when it is spent.
pub(super) fn take(remaining: &AtomicU64, n: u64) -> u64 {
    remaining
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
            (left > 0).then(|| left.saturating_sub(n))
        })
        .map_or(0, |left| left.min(n))
}

fn records(template: &pb::LogRecord, n: u64) -> Vec<pb::LogRecord> {
    (0..n).map(|_| template.clone()).collect()
}

/// Unary (`batch` = 1, Log) or batch (LogBatch) calls, one after another.
async fn calls(
    mut client: Client,
    remaining: Arc<AtomicU64>,
    template: pb::LogRecord,
    batch: u64,
    progress: ProgressBar,
) -> Outcome {
    let mut outcome = Outcome::default();
    loop {
        let n = take(&remaining, batch);
        if n == 0 {
            return outcome;
        }
        let started = Instant::now();
        let result = if batch == 1 {
            client
                .log(pb::LogRequest {
                    record: Some(template.clone()),
                })
                .await
                .map(|r| vec![r.into_inner().id])
        } else {
            client
                .log_batch(pb::LogBatchRequest {
                    records: records(&template, n),
                })
                .await
                .map(|r| r.into_inner().ids)
        };
        outcome.latencies.push(started.elapsed());
        match result {
            Ok(ids) => outcome.acked.extend(ids),
            Err(status) => {
                outcome.failed_calls += 1;
                outcome
                    .first_failure
                    .get_or_insert_with(|| status.to_string());
            }
        }
        progress.inc(n);
    }
}

/// One LogStream: a sender pipelines up to `window` unanswered requests, as a
/// real producer would; the answers are read as they come. Latency is from
/// hand-off to answer.
async fn stream(
    mut client: Client,
    remaining: Arc<AtomicU64>,
    template: pb::LogRecord,
    batch: u64,
    window: usize,
    progress: ProgressBar,
) -> Outcome {
    let (tx, rx) = mpsc::channel::<pb::LogStreamRequest>(1);
    let sent_at: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let unanswered = Arc::new(tokio::sync::Semaphore::new(window.max(1)));
    let sender = {
        let sent_at = Arc::clone(&sent_at);
        let unanswered = Arc::clone(&unanswered);
        tokio::spawn(async move {
            let mut seq = 0u64;
            loop {
                let n = take(&remaining, batch);
                if n == 0 {
                    return seq;
                }
                match unanswered.acquire().await {
                    Ok(permit) => permit.forget(),
                    Err(_) => return seq,
                }
                let request = pb::LogStreamRequest {
                    seq,
                    records: records(&template, n),
                };
                lock(&sent_at).push(Instant::now());
                if tx.send(request).await.is_err() {
                    return seq;
                }
                seq += 1;
            }
        })
    };
    let mut outcome = Outcome::default();
    let mut answers = match client.log_stream(ReceiverStream::new(rx)).await {
        Ok(answers) => answers.into_inner(),
        Err(status) => {
            outcome.failed_calls += 1;
            outcome.first_failure = Some(status.to_string());
            sender.abort();
            return outcome;
        }
    };
    while let Some(answer) = answers.next().await {
        let answer = match answer {
            Ok(answer) => answer,
            Err(status) => {
                outcome.failed_calls += 1;
                outcome
                    .first_failure
                    .get_or_insert_with(|| status.to_string());
                break;
            }
        };
        let sent = lock(&sent_at).get(answer.seq as usize).copied();
        if let Some(sent) = sent {
            outcome.latencies.push(sent.elapsed());
        }
        unanswered.add_permits(1);
        match answer.error {
            None => {
                progress.inc(answer.ids.len() as u64);
                outcome.acked.extend(answer.ids);
            }
            Some(error) => {
                outcome.failed_calls += 1;
                outcome.first_failure.get_or_insert_with(|| {
                    format!("seq {}: {} ({})", answer.seq, error.message, error.code)
                });
            }
        }
    }
    let _ = sender.await;
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_are_spread_over_the_connections() {
        assert_eq!(lanes(8, 1), [0; 8]);
        assert_eq!(lanes(5, 2), [0, 1, 0, 1, 0]);
        assert_eq!(lanes(3, 3), [0, 1, 2]);
        // Never more connections than clients, never none.
        assert_eq!(lanes(2, 16), [0, 1]);
        assert_eq!(lanes(2, 0), [0, 0]);
    }

    #[test]
    fn the_budget_is_split_without_loss_or_excess() {
        let remaining = AtomicU64::new(25);
        let taken: Vec<u64> = std::iter::from_fn(|| Some(take(&remaining, 10)))
            .take_while(|&n| n > 0)
            .collect();
        assert_eq!(taken, [10, 10, 5]);
        assert_eq!(take(&remaining, 10), 0);
    }
}
