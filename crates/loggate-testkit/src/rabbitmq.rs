//! RabbitMQ from the operator's side: `rabbitmqctl` on the default node or a
//! chosen one (`-n`), blocking for tests and async for the chaos lab; the
//! connections and consumers it lists; and a vhost of a test's own.

use std::{
    process::Output,
    time::{Duration, Instant},
};

/// The broker every test uses unless it says otherwise: the default vhost
/// of the RabbitMQ on this machine.
pub const AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// Longest an async `rabbitmqctl` call may take (stop_app and start_app
/// on a loaded node take seconds).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The connection table `connections_named` parses: the client-given name is
/// in the client properties (`name` is the peer address), and
/// `close_connection` wants the pid syntax.
const CONNECTION_TABLE: [&str; 5] = [
    "list_connections",
    "pid",
    "client_properties",
    "channels",
    "--no-table-headers",
];

/// Why a `rabbitmqctl` call did not give an answer.
#[derive(Debug, thiserror::Error)]
pub enum RabbitmqctlError {
    /// It could not be started (not installed, not on PATH).
    #[error("cannot run rabbitmqctl: {0}")]
    Start(#[source] std::io::Error),
    /// It ran longer than its bound.
    #[error("rabbitmqctl {args} took over {} s", after.as_secs())]
    TimedOut {
        /// The arguments, space-separated.
        args: String,
        /// The bound it exceeded.
        after: Duration,
    },
    /// It exited unsuccessfully.
    #[error("rabbitmqctl {args} failed: {stderr}")]
    Failed {
        /// The arguments, space-separated.
        args: String,
        /// What it said on stderr.
        stderr: String,
    },
    /// It answered, but not with what was asked for.
    #[error("{0}")]
    Unexpected(String),
}

/// `rabbitmqctl`, talking to one node: rabbitmqctl's default, or a chosen
/// one (a cluster node, or a survivor after a node was killed).
#[derive(Debug, Clone, Default)]
pub struct Rabbitmqctl {
    node: Option<String>,
}

impl Rabbitmqctl {
    /// `rabbitmqctl -n node`, or rabbitmqctl's default node for `None`.
    pub fn new(node: Option<String>) -> Rabbitmqctl {
        Rabbitmqctl { node }
    }

    /// `rabbitmqctl -n node`.
    pub fn on(node: &str) -> Rabbitmqctl {
        Rabbitmqctl::new(Some(node.to_owned()))
    }

    /// The node it talks to, when one was chosen.
    pub fn node(&self) -> Option<&str> {
        self.node.as_deref()
    }

    /// Runs `rabbitmqctl -q ARGS` (bounded by a minute) and returns stdout.
    pub async fn run(&self, args: &[&str]) -> Result<String, RabbitmqctlError> {
        let mut command = tokio::process::Command::new("rabbitmqctl");
        command.args(self.full_args(args));
        let output = tokio::time::timeout(CALL_TIMEOUT, command.output())
            .await
            .map_err(|_| RabbitmqctlError::TimedOut {
                args: args.join(" "),
                after: CALL_TIMEOUT,
            })?;
        answer(args, output)
    }

    /// The same, blocking the calling thread (for tests and `Drop`).
    pub fn run_blocking(&self, args: &[&str]) -> Result<String, RabbitmqctlError> {
        let output = std::process::Command::new("rabbitmqctl")
            .args(self.full_args(args))
            .output();
        answer(args, output)
    }

    /// `-n node` when chosen, and `-q`: callers parse stdout, which must hold
    /// the answer only.
    fn full_args<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let mut all = Vec::with_capacity(args.len() + 3);
        if let Some(node) = &self.node {
            all.extend(["-n", node.as_str()]);
        }
        all.push("-q");
        all.extend_from_slice(args);
        all
    }

    /// Lets `guest` do anything in `vhost`.
    pub async fn grant(&self, vhost: &str) -> Result<(), RabbitmqctlError> {
        self.run(&grant_args(vhost)).await.map(drop)
    }

    /// Locks `guest` out of `vhost`: new connections are refused until `grant`.
    pub async fn revoke(&self, vhost: &str) -> Result<(), RabbitmqctlError> {
        self.run(&revoke_args(vhost)).await.map(drop)
    }

    /// Connections whose client-given name contains `needle`.
    pub async fn connections(&self, needle: &str) -> Result<Vec<AmqpConnection>, RabbitmqctlError> {
        Ok(parse_connections(
            &self.run(&CONNECTION_TABLE).await?,
            needle,
        ))
    }

    /// The node holding the connection whose name contains `needle`.
    pub async fn node_of_connection(&self, needle: &str) -> Result<String, RabbitmqctlError> {
        self.connections(needle)
            .await?
            .iter()
            .find_map(|connection| connection.node().map(str::to_owned))
            .ok_or_else(|| {
                RabbitmqctlError::Unexpected(format!(
                    "no connection named {needle:?} on the cluster"
                ))
            })
    }

    /// A `rabbitmqctl` for a running node of the cluster other than `victim`.
    pub async fn survivor_of(&self, victim: &str) -> Result<Rabbitmqctl, RabbitmqctlError> {
        let running = self.run(&["eval", "rabbit_nodes:all_running()."]).await?;
        running
            .trim()
            .trim_matches(|c| c == '[' || c == ']')
            .split(',')
            .map(|node| node.trim().trim_matches('\''))
            .find(|node| !node.is_empty() && *node != victim)
            .map(Rabbitmqctl::on)
            .ok_or_else(|| {
                RabbitmqctlError::Unexpected(format!("no running node besides {victim}"))
            })
    }

    /// The OS process id of the node's Erlang VM.
    pub async fn os_pid(&self) -> Result<String, RabbitmqctlError> {
        let out = self.run(&["eval", "os:getpid()."]).await?;
        let pid = out.trim().trim_matches('"').to_owned();
        if pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
            return Err(RabbitmqctlError::Unexpected(format!(
                "unexpected pid {out:?} for {}",
                self.node().unwrap_or("the default node")
            )));
        }
        Ok(pid)
    }

    /// Waits up to `within` until the node runs RabbitMQ again (after
    /// `start_app`), as `rabbitmq-diagnostics check_running` sees it.
    pub async fn wait_running(&self, within: Duration) -> Result<(), RabbitmqctlError> {
        let deadline = Instant::now() + within;
        loop {
            let mut command = tokio::process::Command::new("rabbitmq-diagnostics");
            if let Some(node) = &self.node {
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
                return Err(RabbitmqctlError::Unexpected(format!(
                    "RabbitMQ did not come back within {} s",
                    within.as_secs()
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// stdout of a successful run; the error otherwise.
fn answer(args: &[&str], output: std::io::Result<Output>) -> Result<String, RabbitmqctlError> {
    let output = output.map_err(RabbitmqctlError::Start)?;
    if !output.status.success() {
        return Err(RabbitmqctlError::Failed {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn grant_args(vhost: &str) -> [&str; 7] {
    ["set_permissions", "-p", vhost, "guest", ".*", ".*", ".*"]
}

fn revoke_args(vhost: &str) -> [&str; 4] {
    ["clear_permissions", "-p", vhost, "guest"]
}

/// One AMQP connection, as `rabbitmqctl list_connections` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmqpConnection {
    /// Its Erlang pid, `<node.1.2.3>`, which `close_connection` takes.
    pub pid: String,
    /// The name its client gave it (loggate's: `<instance> <role>`).
    pub name: String,
    /// How many channels it has open.
    pub channels: u64,
}

impl AmqpConnection {
    /// The node it is on, which its pid names: `rabbit@host` of `<rabbit@host.1.2.3>`.
    pub fn node(&self) -> Option<&str> {
        let pid = self.pid.trim().trim_start_matches('<');
        let mut parts = pid.rsplitn(4, '.');
        let _ = (parts.next(), parts.next(), parts.next());
        parts.next()
    }
}

/// The connections of a `CONNECTION_TABLE` whose name contains `needle`.
fn parse_connections(table: &str, needle: &str) -> Vec<AmqpConnection> {
    table
        .lines()
        .filter_map(|line| {
            let mut columns = line.split('\t');
            let pid = columns.next()?;
            let properties = columns.next()?;
            let channels = columns.next()?.trim().parse().ok()?;
            let (_, rest) = properties.split_once("{\"connection_name\",\"")?;
            let (name, _) = rest.split_once('"')?;
            name.contains(needle).then(|| AmqpConnection {
                pid: pid.to_owned(),
                name: name.to_owned(),
                channels,
            })
        })
        .collect()
}

/// Runs `rabbitmqctl -q ARGS` on the default node and returns stdout;
/// panics when it fails.
pub fn rabbitmqctl(args: &[&str]) -> String {
    Rabbitmqctl::default()
        .run_blocking(args)
        .unwrap_or_else(|error| panic!("{error}"))
}

/// Connections whose client-provided name contains `needle`: (pid, name, channels).
pub fn connections_named(needle: &str) -> Vec<(String, String, u64)> {
    parse_connections(&rabbitmqctl(&CONNECTION_TABLE), needle)
        .into_iter()
        .map(|c| (c.pid, c.name, c.channels))
        .collect()
}

/// Consumers on the channels of connections whose name contains `needle`.
/// (On RabbitMQ 3.10, `list_consumers` does not show stream consumers and a
/// stream's `consumers` count is stale, but a channel's `consumer_count` is right.)
pub fn consumers_of_connection(needle: &str) -> u64 {
    let pids: Vec<String> = connections_named(needle)
        .into_iter()
        .map(|(pid, _, _)| pid)
        .collect();
    let table = rabbitmqctl(&[
        "list_channels",
        "connection",
        "consumer_count",
        "--no-table-headers",
    ]);
    table
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .filter(|(connection, _)| pids.iter().any(|p| p == connection))
        .filter_map(|(_, count)| count.trim().parse::<u64>().ok())
        .sum()
}

/// Closes every connection whose name contains `needle`, as an operator (or a
/// broker failure) would; returns how many there were.
pub fn close_connections(needle: &str) -> usize {
    let found = connections_named(needle);
    for (pid, _, _) in &found {
        rabbitmqctl(&["close_connection", pid, "closed by a loggate test"]);
    }
    found.len()
}

/// A virtual host of the test's own, so that it can break the gateway's broker
/// access (permissions, connections) without touching any other test.
/// Deleted on drop.
pub struct Vhost {
    /// Its name, unique to the test.
    pub name: String,
}

impl Vhost {
    /// Creates a vhost with a unique name that `guest` may use.
    pub fn create() -> Vhost {
        let name = crate::unique("vhost");
        rabbitmqctl(&["add_vhost", &name]);
        let vhost = Vhost { name };
        vhost.grant();
        vhost
    }

    /// The AMQP URL of this vhost.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:5672/{}", self.name)
    }

    /// Lets `guest` in.
    pub fn grant(&self) {
        rabbitmqctl(&grant_args(&self.name));
    }

    /// Locks `guest` out: new connections are refused until `grant`.
    pub fn revoke(&self) {
        rabbitmqctl(&revoke_args(&self.name));
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        // Best effort, and no panic: this may run while a test is failing.
        let _ = Rabbitmqctl::default().run_blocking(&["delete_vhost", &self.name]);
    }
}

/// RabbitMQ's eval expression that calls `sys:<call>` on the process
/// writing `stream` (in the default vhost): on 3.10, a stream queue's pid is
/// its osiris writer.
fn stream_writer(stream: &str, call: &str) -> String {
    format!(
        "{{ok, Q}} = rabbit_amqqueue:lookup(rabbit_misc:r(<<\"/\">>, queue, <<\"{stream}\">>)), \
         sys:{call}(amqqueue:get_pid(Q))."
    )
}

/// One stream queue's writer, suspended until `resume` (or drop): messages
/// routed to that stream are neither stored nor confirmed meanwhile, while
/// the other queues bound to the exchange get them at once. Nothing else on
/// the broker is touched.
pub struct SuspendedStream {
    stream: Option<String>,
}

impl SuspendedStream {
    /// Suspends the writer of `stream` (a stream queue in the default vhost).
    pub async fn suspend(stream: &str) -> SuspendedStream {
        let said = Rabbitmqctl::default()
            .run(&["eval", &stream_writer(stream, "suspend")])
            .await
            .expect("the stream's writer is suspended");
        assert_eq!(said.trim(), "ok");
        SuspendedStream {
            stream: Some(stream.to_owned()),
        }
    }

    /// Lets the writer go on: what it held is stored and confirmed.
    pub async fn resume(mut self) {
        let stream = self.stream.take().expect("resumed once");
        let said = Rabbitmqctl::default()
            .run(&["eval", &stream_writer(&stream, "resume")])
            .await
            .expect("the stream's writer resumes");
        assert_eq!(said.trim(), "ok");
    }
}

impl Drop for SuspendedStream {
    fn drop(&mut self) {
        // A failing test must not leave the stream stuck (its deletion would hang).
        if let Some(stream) = self.stream.take() {
            let _ =
                Rabbitmqctl::default().run_blocking(&["eval", &stream_writer(&stream, "resume")]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_is_found_by_a_part_of_its_client_given_name() {
        let table = "<rabbit@h.1.22.0>\t[{\"connection_name\",\"gw-1 publish\"},{\"product\",\"lapin\"}]\t2\n\
                     <rabbit@h.1.23.0>\t[{\"connection_name\",\"gw-1 tail\"}]\t1\n\
                     <rabbit@h.1.24.0>\t[{\"product\",\"other\"}]\t1\n";
        let found = parse_connections(table, "gw-1 tail");
        assert_eq!(
            found,
            vec![AmqpConnection {
                pid: "<rabbit@h.1.23.0>".into(),
                name: "gw-1 tail".into(),
                channels: 1,
            }]
        );
        assert_eq!(parse_connections(table, "gw-1").len(), 2);
    }

    #[test]
    fn a_connections_pid_names_its_node() {
        let on = |pid: &str| AmqpConnection {
            pid: pid.into(),
            name: String::new(),
            channels: 0,
        };
        assert_eq!(
            on("<loggate2@build-host.1.2.3>").node(),
            Some("loggate2@build-host")
        );
        assert_eq!(
            on("<rabbit@h.example.org.10.20.30>").node(),
            Some("rabbit@h.example.org")
        );
    }

    #[test]
    fn a_chosen_node_and_quiet_output_come_before_the_command() {
        assert_eq!(
            Rabbitmqctl::on("n@h").full_args(&["list_vhosts"]),
            ["-n", "n@h", "-q", "list_vhosts"]
        );
        assert_eq!(
            Rabbitmqctl::default().full_args(&["list_vhosts"]),
            ["-q", "list_vhosts"]
        );
    }
}
