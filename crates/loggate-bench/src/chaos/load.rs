//! The load: clients sending `LogBatch` calls at a steady rate.

use std::time::{Duration, Instant};

use tonic::transport::Endpoint;

use loggate::proto::v1::{self as pb, log_gateway_client::LogGatewayClient};
use loggate_testkit::record;

use crate::config::ChaosArgs;

/// Longest a load call may take (a blocked broker holds calls for
/// `--publish-timeout`, 10 s by default).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Clients sending LogBatch calls at a steady rate.
pub(super) struct Load {
    pub started: Instant,
    stop: tokio_util::sync::CancellationToken,
    workers: tokio::task::JoinSet<Sent>,
}

/// What the clients got back.
#[derive(Default)]
pub(super) struct Sent {
    pub acked: Vec<String>,
    pub spooled: u64,
    pub failed: u64,
    pub first_failure: Option<String>,
    /// When the first and the last refused call came back.
    pub failures_between: Option<(Instant, Instant)>,
    pub elapsed: Duration,
}

impl Load {
    pub fn start(url: &str, args: &ChaosArgs) -> Load {
        let stop = tokio_util::sync::CancellationToken::new();
        let mut workers = tokio::task::JoinSet::new();
        let batch = args.batch_size as usize;
        let concurrency = args.concurrency as usize;
        // Each client sends a batch per tick; together they make --rate.
        let period =
            Duration::from_secs_f64((batch * concurrency) as f64 / f64::from(args.rate.max(1)));
        for client_no in 0..concurrency {
            // Every call is bounded, so a wedged gateway cannot hang the run.
            let channel = Endpoint::from_shared(url.to_owned())
                .expect("the gateway's URL is valid")
                .connect_timeout(Duration::from_secs(1))
                .timeout(CALL_TIMEOUT)
                .connect_lazy();
            let mut client = LogGatewayClient::new(channel);
            let stop = stop.clone();
            workers.spawn(async move {
                let mut sent = Sent::default();
                let mut ticks = tokio::time::interval(period);
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut call = 0u64;
                loop {
                    tokio::select! {
                        _ = ticks.tick() => {}
                        () = stop.cancelled() => return sent,
                    }
                    call += 1;
                    // Service `chaos` is what the follower tails.
                    let records = (0..batch)
                        .map(|i| pb::LogRecord {
                            level: pb::Level::Info as i32,
                            node: "loggate-chaos".into(),
                            ..record("chaos", &format!("c{client_no}.{call}.{i}"))
                        })
                        .collect();
                    match client.log_batch(pb::LogBatchRequest { records }).await {
                        Ok(response) => {
                            let response = response.into_inner();
                            if response.spooled {
                                sent.spooled += response.ids.len() as u64;
                            }
                            sent.acked.extend(response.ids);
                        }
                        Err(status) => {
                            sent.failed += 1;
                            let now = Instant::now();
                            let (first, _) = sent.failures_between.unwrap_or((now, now));
                            sent.failures_between = Some((first, now));
                            sent.first_failure.get_or_insert_with(|| {
                                format!("{:?}: {}", status.code(), status.message())
                            });
                        }
                    }
                }
            });
        }
        Load {
            started: Instant::now(),
            stop,
            workers,
        }
    }

    pub async fn stop(mut self) -> Sent {
        self.stop.cancel();
        let mut all = Sent::default();
        while let Some(joined) = self.workers.join_next().await {
            let part = match joined {
                Ok(part) => part,
                Err(error) => {
                    // Its acked ids are lost to the count: say so loudly.
                    all.failed += 1;
                    all.first_failure
                        .get_or_insert_with(|| format!("a client task failed: {error}"));
                    continue;
                }
            };
            all.acked.extend(part.acked);
            all.spooled += part.spooled;
            all.failed += part.failed;
            all.first_failure = all.first_failure.or(part.first_failure);
            all.failures_between = match (all.failures_between, part.failures_between) {
                (Some((a, b)), Some((c, d))) => Some((a.min(c), b.max(d))),
                (one, other) => one.or(other),
            };
        }
        all.elapsed = self.started.elapsed();
        all
    }
}
