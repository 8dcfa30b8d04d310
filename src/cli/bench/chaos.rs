//! `loggate chaos FAULT`: steady load on a gateway of our own, one fault,
//! then the loss check: every record the gateway answered OK must be in the
//! history stream, and a live tail that stayed open must have seen it too.
//! Prints acked, found, missing, duplicated, the recovery time (broker back →
//! gateway SERVING), what the tail saw, and the gateway's peak RSS.
//!
//! Everything runs in a vhost of the run's own (deleted at the end), so the
//! faults that can be confined to it (close-connections, kill-gateway) touch
//! nothing else on the broker.

use std::{
    process::ExitCode,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use time::OffsetDateTime;
use tokio::process::Command;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::{health_check_response::ServingStatus, health_client::HealthClient};

use super::{
    process::{ProcStat, SpawnedGateway},
    report::megabytes,
    verify::{self, Tally},
    Error,
};
use crate::config::{ChaosArgs, Fault};
use crate::proto::v1::{self as pb, log_gateway_client::LogGatewayClient};

/// How often the gateway's health and memory are sampled.
const SAMPLE_EVERY: Duration = Duration::from_millis(50);
/// Longest a load call may take (a blocked broker holds calls for
/// `--publish-timeout`, 10 s by default).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest wait for the gateway to serve again once the load has ended.
const SETTLE: Duration = Duration::from_secs(60);

pub async fn run(args: ChaosArgs) -> Result<ExitCode, Error> {
    let tag = format!(
        "chaos-{}-{:x}",
        std::process::id(),
        OffsetDateTime::now_utc().unix_timestamp_nanos() % 0xffff_ffff
    );
    let rabbitmqctl = Rabbitmqctl {
        node: Mutex::new(args.node.clone()),
    };
    let vhost = format!("loggate-{tag}");
    rabbitmqctl.run(&["add_vhost", &vhost]).await?;
    let outcome = run_in(&args, &tag, &vhost, &rabbitmqctl).await;
    if let Err(error) = rabbitmqctl.run(&["delete_vhost", &vhost]).await {
        eprintln!("loggate chaos: could not delete vhost {vhost}: {error}");
    }
    outcome
}

async fn run_in(
    args: &ChaosArgs,
    tag: &str,
    vhost: &str,
    rabbitmqctl: &Rabbitmqctl,
) -> Result<ExitCode, Error> {
    rabbitmqctl.grant(vhost).await?;
    let urls: Vec<String> = args
        .broker
        .amqp_url
        .iter()
        .map(|url| in_vhost(url, vhost))
        .collect();
    let joined = urls.join(",");

    // A fixed port, so a restarted gateway is where the clients left it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map_err(|e| Error::Gateway(format!("no free port: {e}")))?
        .port();
    let temporary_spool = std::env::temp_dir().join(format!("loggate-{tag}-spool"));
    let spool = (args.spool || args.fault == Fault::KillGateway)
        .then(|| args.spool_dir.clone().unwrap_or(temporary_spool.clone()));
    let mut extra = vec!["--listen".to_owned(), format!("127.0.0.1:{port}")];
    if let Some(dir) = &spool {
        extra.extend(["--spool-dir".to_owned(), dir.display().to_string()]);
    }
    extra.extend(args.gateway_args.iter().cloned());

    println!(
        "loggate chaos: fault={} rate={}/s duration={} fault-at={} outage={} brokers={} spool={}",
        fault_name(args.fault),
        args.rate,
        humantime::format_duration(args.duration),
        humantime::format_duration(args.fault_at),
        humantime::format_duration(args.outage),
        urls.len(),
        spool
            .as_ref()
            .map_or("off".to_owned(), |d| d.display().to_string()),
    );
    let gateway = SpawnedGateway::start(&joined, tag, &extra).await?;
    let history_queue = gateway.history_queue.clone();
    let url = gateway.url.clone();
    let watch = Watch::start(&url, gateway.pid);

    // A live tail follows the run through the fault: it should see every
    // acknowledged record too (tails resume after the broker comes back).
    let follower = Follower::start(&url).await?;
    let load = Load::start(&url, args);
    let fault_at = load.started + args.fault_at;
    tokio::time::sleep(args.fault_at).await;
    let injected = inject(
        args,
        tag,
        vhost,
        rabbitmqctl,
        gateway,
        &joined,
        &extra,
        &watch,
    )
    .await;
    let (gateway, broker_back) = match injected {
        Ok(done) => done,
        Err(error) => {
            load.stop().await;
            return Err(error);
        }
    };
    let elapsed = load.started.elapsed();
    if let Some(rest) = args.duration.checked_sub(elapsed) {
        tokio::time::sleep(rest).await;
    }
    let sent = load.stop().await;

    // Let the gateway recover and drain before reading the history back.
    let recovered = watch.serving_after(broker_back, SETTLE).await;
    let recovery = recovered.map(|at| at.saturating_duration_since(broker_back));
    let seen = read_back(&urls, &history_queue, &sent.acked).await?;
    let followed = follower.finish(&sent.acked).await;
    let tally = Tally::of(&sent.acked, &seen);
    let peak_rss = watch.stop();
    gateway.stop().await;
    if spool.is_some() && args.spool_dir.is_none() {
        let _ = std::fs::remove_dir_all(&temporary_spool);
    }

    let seconds = sent.elapsed.as_secs_f64();
    if let Some((first, last)) = sent.failures_between {
        let since_fault = |at: Instant| at.saturating_duration_since(fault_at).as_secs_f64();
        println!(
            "refused:  calls failed from {:.2} s to {:.2} s after the fault began",
            since_fault(first),
            since_fault(last)
        );
    }
    println!(
        "load:     {} records acked in {seconds:.1} s ({:.0}/s); {} answered spooled; {} calls failed{}",
        sent.acked.len(),
        sent.acked.len() as f64 / seconds.max(0.001),
        sent.spooled,
        sent.failed,
        sent.first_failure
            .as_ref()
            .map_or(String::new(), |f| format!(" (first: {f})")),
    );
    match recovery {
        Some(took) if took.is_zero() => println!(
            "recovery: gateway SERVING when the broker was back (health is sampled every {} ms)",
            SAMPLE_EVERY.as_millis()
        ),
        Some(took) => println!(
            "recovery: gateway SERVING {:.2} s after the broker was back",
            took.as_secs_f64()
        ),
        None => println!(
            "recovery: the gateway was not SERVING within {} of the broker being back",
            humantime::format_duration(SETTLE)
        ),
    }
    println!(
        "history:  acked {}  found {}  missing {}  duplicated {}",
        tally.acked, tally.found, tally.missing, tally.duplicated
    );
    match &followed.ended {
        None => println!(
            "tail:     a live tail saw {} of the acked records ({} missing)",
            sent.acked.len() as u64 - followed.missing,
            followed.missing
        ),
        Some(status) => println!(
            "tail:     the live tail ended: {status} (it saw {} of the acked records)",
            sent.acked.len() as u64 - followed.missing
        ),
    }
    println!("gateway:  peak RSS {}", megabytes(peak_rss));
    if tally.missing > 0 {
        eprintln!(
            "loggate chaos: {} acknowledged records are missing",
            tally.missing
        );
        return Ok(ExitCode::FAILURE);
    }
    if followed.ended.is_none() && followed.missing > 0 {
        eprintln!(
            "loggate chaos: the live tail stayed open but missed {} acknowledged records",
            followed.missing
        );
        return Ok(ExitCode::FAILURE);
    }
    if recovery.is_none() {
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

/// Injects the fault; returns the gateway now serving (a new one after
/// kill-gateway) and when the broker was back.
#[allow(clippy::too_many_arguments)]
async fn inject(
    args: &ChaosArgs,
    tag: &str,
    vhost: &str,
    rabbitmqctl: &Rabbitmqctl,
    gateway: SpawnedGateway,
    urls: &str,
    extra: &[String],
    watch: &Watch,
) -> Result<(SpawnedGateway, Instant), Error> {
    let at = |what: &str| println!("fault:    {what}");
    match args.fault {
        Fault::Restart => {
            at("rabbitmqctl stop_app");
            rabbitmqctl.run(&["stop_app"]).await?;
            tokio::time::sleep(args.outage).await;
            rabbitmqctl.run(&["start_app"]).await?;
            // start_app returns once the broker runs: that is "back".
            let back = Instant::now();
            rabbitmqctl.wait_running().await?;
            at("rabbitmqctl start_app: RabbitMQ is back");
            return Ok((gateway, back));
        }
        Fault::CloseConnections => {
            at("rabbitmqctl close_all_connections in the run's vhost");
            // The broker never went away: recovery counts from the cut.
            let cut = Instant::now();
            rabbitmqctl
                .run(&["close_all_connections", "-p", vhost, "loggate chaos"])
                .await?;
            return Ok((gateway, cut));
        }
        Fault::KillNode => {
            let node = rabbitmqctl
                .node_of_connection(&format!("bench-{tag} publish"))
                .await?;
            let pid = rabbitmqctl.os_pid(&node).await?;
            rabbitmqctl.avoid(&node).await?;
            at(&format!(
                "kill -9 {pid} (node {node}, where the gateway publishes)"
            ));
            let killed = Command::new("kill")
                .args(["-9", &pid])
                .status()
                .await
                .map_err(|e| Error::Gateway(format!("kill: {e}")))?;
            if !killed.success() {
                return Err(Error::Gateway(format!("kill -9 {pid} failed")));
            }
            println!("          (the node stays down; restart it with scripts/rabbitmq-cluster start-node)");
        }
        Fault::Alarm => {
            let previous = rabbitmqctl
                .run(&["eval", "vm_memory_monitor:get_vm_memory_high_watermark()."])
                .await?;
            let previous = previous.trim().to_owned();
            at("memory alarm: set_vm_memory_high_watermark 0");
            rabbitmqctl
                .run(&["set_vm_memory_high_watermark", "0"])
                .await?;
            tokio::time::sleep(args.outage).await;
            let restore = if previous.starts_with("{absolute") {
                let bytes = previous
                    .trim_matches(|c| c == '{' || c == '}')
                    .split(',')
                    .nth(1)
                    .unwrap_or("0")
                    .trim()
                    .to_owned();
                rabbitmqctl
                    .run(&["set_vm_memory_high_watermark", "absolute", &bytes])
                    .await
            } else {
                rabbitmqctl
                    .run(&["set_vm_memory_high_watermark", &previous])
                    .await
            };
            restore?;
            at(&format!("watermark restored to {previous}"));
        }
        Fault::KillGateway => {
            at("the gateway is locked out of RabbitMQ: it spools");
            rabbitmqctl
                .run(&["clear_permissions", "-p", vhost, "guest"])
                .await?;
            rabbitmqctl
                .run(&["close_all_connections", "-p", vhost, "loggate chaos"])
                .await?;
            tokio::time::sleep(args.outage / 2).await;
            let peak = ProcStat::read(gateway.pid).map_or(0, |s| s.peak_rss_bytes);
            watch.note_rss(peak);
            at("kill -9 the gateway");
            gateway.kill().await;
            tokio::time::sleep(args.outage / 2).await;
            rabbitmqctl.grant(vhost).await?;
            let back = Instant::now();
            at("RabbitMQ lets the gateway in; starting it again on the same spool");
            let restarted = SpawnedGateway::start(urls, tag, extra).await?;
            watch.follow(restarted.pid);
            return Ok((restarted, back));
        }
    }
    Ok((gateway, Instant::now()))
}

fn fault_name(fault: Fault) -> &'static str {
    match fault {
        Fault::Restart => "restart",
        Fault::CloseConnections => "close-connections",
        Fault::KillNode => "kill-node",
        Fault::Alarm => "alarm",
        Fault::KillGateway => "kill-gateway",
    }
}

/// `url` with its vhost replaced by `vhost`.
fn in_vhost(url: &str, vhost: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_start..]
        .find('/')
        .map_or(base.len(), |i| authority_start + i);
    let mut out = format!("{}/{}", &base[..path_start], vhost);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// Reads the history back from the first broker that answers.
async fn read_back(
    urls: &[String],
    queue: &str,
    acked: &[String],
) -> Result<std::collections::HashMap<String, u32>, Error> {
    let mut last = None;
    for url in urls {
        match verify::read_stream(
            url,
            queue,
            lapin::types::AMQPValue::LongString("first".into()),
            acked,
            Duration::from_secs(15),
        )
        .await
        {
            Ok(seen) => return Ok(seen),
            Err(error) => last = Some(error),
        }
    }
    Err(last.unwrap_or_else(|| Error::Gateway("no --amqp-url".into())))
}

/// `rabbitmqctl`, on the chosen node (moved to a survivor after kill-node).
struct Rabbitmqctl {
    node: Mutex<Option<String>>,
}

impl Rabbitmqctl {
    fn node(&self) -> Option<String> {
        self.node
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    async fn run(&self, args: &[&str]) -> Result<String, Error> {
        self.run_on(self.node().as_deref(), args).await
    }

    /// From now on, talk to a running node other than `victim`.
    async fn avoid(&self, victim: &str) -> Result<(), Error> {
        let running = self.run(&["eval", "rabbit_nodes:all_running()."]).await?;
        let survivor = running
            .trim()
            .trim_matches(|c| c == '[' || c == ']')
            .split(',')
            .map(|node| node.trim().trim_matches('\''))
            .find(|node| !node.is_empty() && *node != victim)
            .ok_or_else(|| Error::Gateway(format!("no running node besides {victim}")))?
            .to_owned();
        *self
            .node
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(survivor);
        Ok(())
    }

    async fn run_on(&self, node: Option<&str>, args: &[&str]) -> Result<String, Error> {
        let mut command = Command::new("rabbitmqctl");
        if let Some(node) = node {
            command.args(["-n", node]);
        }
        let output = tokio::time::timeout(
            Duration::from_secs(60),
            command.args(["-q"]).args(args).output(),
        )
        .await
        .map_err(|_| Error::Gateway(format!("rabbitmqctl {} took over 60 s", args.join(" "))))?
        .map_err(|e| Error::Gateway(format!("cannot run rabbitmqctl: {e}")))?;
        if !output.status.success() {
            return Err(Error::Gateway(format!(
                "rabbitmqctl {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    async fn grant(&self, vhost: &str) -> Result<(), Error> {
        self.run(&["set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"])
            .await
            .map(drop)
    }

    async fn wait_running(&self) -> Result<(), Error> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut command = Command::new("rabbitmq-diagnostics");
            if let Some(node) = self.node() {
                command.args(["-n", node.as_str()]);
            }
            let ok = command
                .args(["-q", "check_running"])
                .output()
                .await
                .is_ok_and(|o| o.status.success());
            if ok {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::Gateway(
                    "RabbitMQ did not come back within 60 s".into(),
                ));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The node a connection (found by a part of its name) is on; its pid,
    /// `<node.1.2.3>`, names it.
    async fn node_of_connection(&self, needle: &str) -> Result<String, Error> {
        // The client-given name is in the client properties (`name` is the address).
        let table = self
            .run(&["list_connections", "pid", "client_properties"])
            .await?;
        table
            .lines()
            .filter(|line| line.contains(needle))
            .find_map(|line| {
                let pid = line.split('\t').next()?.trim().trim_start_matches('<');
                let mut parts = pid.rsplitn(4, '.');
                let _ = (parts.next(), parts.next(), parts.next());
                parts.next().map(str::to_owned)
            })
            .ok_or_else(|| Error::Gateway(format!("no connection named {needle:?} on the cluster")))
    }

    /// The OS process id of `node`'s Erlang VM.
    async fn os_pid(&self, node: &str) -> Result<String, Error> {
        let out = self.run_on(Some(node), &["eval", "os:getpid()."]).await?;
        let pid = out.trim().trim_matches('"').to_owned();
        if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Error::Gateway(format!("unexpected pid {out:?} for {node}")));
        }
        Ok(pid)
    }
}

/// Samples the gateway's health and memory in the background.
struct Watch {
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
    fn start(url: &str, pid: u32) -> Watch {
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

    fn follow(&self, pid: u32) {
        lock(&self.inner).pid = pid;
    }

    fn note_rss(&self, bytes: u64) {
        let mut watched = lock(&self.inner);
        watched.peak_rss = watched.peak_rss.max(bytes);
    }

    /// The first moment at or after `since` when the gateway was SERVING,
    /// waiting up to `wait` for it.
    async fn serving_after(&self, since: Instant, wait: Duration) -> Option<Instant> {
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
    fn stop(self) -> u64 {
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

/// Clients sending LogBatch calls at a steady rate.
struct Load {
    started: Instant,
    stop: tokio_util::sync::CancellationToken,
    workers: tokio::task::JoinSet<Sent>,
}

/// What the clients got back.
#[derive(Default)]
struct Sent {
    acked: Vec<String>,
    spooled: u64,
    failed: u64,
    first_failure: Option<String>,
    /// When the first and the last refused call came back.
    failures_between: Option<(Instant, Instant)>,
    elapsed: Duration,
}

impl Load {
    fn start(url: &str, args: &ChaosArgs) -> Load {
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
                    let records = (0..batch)
                        .map(|i| record(&format!("c{client_no}.{call}.{i}")))
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

    async fn stop(mut self) -> Sent {
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

/// A live Tail of the run's records, collecting their ids.
struct Follower {
    seen: Arc<Mutex<std::collections::HashSet<String>>>,
    ended: Arc<Mutex<Option<String>>>,
    task: tokio::task::JoinHandle<()>,
}

/// What the follower saw of the acknowledged records.
struct Followed {
    missing: u64,
    /// The status the tail ended with, if it did.
    ended: Option<String>,
}

impl Follower {
    async fn start(url: &str) -> Result<Follower, Error> {
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
        let seen = Arc::new(Mutex::new(std::collections::HashSet::new()));
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
    async fn finish(self, acked: &[String]) -> Followed {
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

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn record(message: &str) -> pb::LogRecord {
    pb::LogRecord {
        service: "chaos".into(),
        level: pb::Level::Info as i32,
        message: message.into(),
        node: "loggate-chaos".into(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vhost_replaces_the_urls_path() {
        assert_eq!(
            in_vhost("amqp://guest:guest@127.0.0.1:5672/%2f", "v1"),
            "amqp://guest:guest@127.0.0.1:5672/v1"
        );
        assert_eq!(
            in_vhost("amqp://127.0.0.1:5672", "v"),
            "amqp://127.0.0.1:5672/v"
        );
        assert_eq!(
            in_vhost("amqp://h:1/x?frame_max=8192", "v"),
            "amqp://h:1/v?frame_max=8192"
        );
    }
}
