//! A real 3-node RabbitMQ cluster (scripts/rabbitmq-cluster, on ports that do
//! not clash with the default node): the history stream is replicated to
//! every node, and when the node the gateway publishes through is killed with
//! SIGKILL, the gateway fails over to another node by itself, serves again,
//! and every record it acknowledged is still in the history.
//!
//! One test, in a binary of its own: it owns the cluster from start to stop.

use std::{
    collections::HashSet,
    process::Command,
    time::{Duration, Instant},
};

use loggate::proto::v1 as pb;
use loggate_testkit::{history, record, Gateway, Rabbitmqctl, SERVING};

/// The script is the workspace's, two levels above this crate.
const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../scripts/rabbitmq-cluster"
);
/// Only to catch a gateway that never fails over: how long failover takes is
/// measured (and printed) here and by `loggate-bench chaos`, not asserted.
const FAILOVER_DEADLINE: Duration = Duration::from_secs(60);

/// The cluster, stopped (and its data deleted) when the test ends, pass or fail.
struct Cluster {
    urls: String,
}

impl Cluster {
    fn start() -> Cluster {
        let output = Command::new(SCRIPT)
            .arg("start")
            .output()
            .expect("scripts/rabbitmq-cluster runs");
        assert!(
            output.status.success(),
            "starting the cluster failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let urls = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        assert_eq!(urls.split(',').count(), 3, "{urls}");
        Cluster { urls }
    }

    fn kill_node(&self, n: u32) {
        let status = Command::new(SCRIPT)
            .args(["kill-node", &n.to_string()])
            .status()
            .expect("scripts/rabbitmq-cluster runs");
        assert!(status.success());
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(SCRIPT).arg("stop").status();
    }
}

/// `rabbitmqctl` against node `loggate<n>` of the cluster.
fn on_node(n: u32) -> Rabbitmqctl {
    Rabbitmqctl::on(&format!("loggate{n}@{}", hostname()))
}

fn hostname() -> String {
    let output = Command::new("hostname")
        .arg("-s")
        .output()
        .expect("hostname");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Which node (1, 2 or 3) holds the connection whose client-given name
/// contains `needle`, asking node `ask`.
async fn node_of_connection(ask: u32, needle: &str) -> Option<u32> {
    let connections = on_node(ask)
        .connections(needle)
        .await
        .expect("rabbitmqctl lists the connections");
    connections.iter().find_map(|connection| {
        let node = connection.node()?;
        node.strip_prefix("loggate")?
            .split('@')
            .next()?
            .parse()
            .ok()
    })
}

async fn log_one(
    client: &mut pb::log_gateway_client::LogGatewayClient<tonic::transport::Channel>,
    message: &str,
) -> Result<pb::LogResponse, tonic::Status> {
    client
        .log(pb::LogRequest {
            record: Some(record("cluster", message)),
        })
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_fails_over_when_its_node_is_killed_and_loses_nothing() {
    let cluster = Cluster::start();
    // What the gateway declares goes with the cluster's data when it stops.
    let gateway = Gateway::start_at(&cluster.urls, &[]).await;
    let mut client = gateway.client().await;

    let mut acked = Vec::new();
    for i in 0..50 {
        let response = log_one(&mut client, &format!("before {i}"))
            .await
            .expect("a healthy cluster confirms");
        assert!(!response.spooled);
        acked.push(response.id);
    }

    // The history stream has a replica on every node (--history-replicas
    // defaults to 3, and the cluster has 3).
    let members = on_node(1)
        .run_blocking(&["list_queues", "name", "members"])
        .expect("rabbitmqctl lists the queues");
    let line = members
        .lines()
        .find(|line| line.starts_with(&gateway.history_queue))
        .unwrap_or_else(|| panic!("the history stream is listed: {members}"));
    for n in 1..=3 {
        assert!(line.contains(&format!("loggate{n}@")), "{line}");
    }

    let publishing = format!("{} publish", gateway.instance);
    let victim = node_of_connection(1, &publishing)
        .await
        .expect("the publish connection is on a node");
    cluster.kill_node(victim);
    let killed_at = Instant::now();

    // Calls during the failover may be refused (UNAVAILABLE: no spool here),
    // never answered OK without a confirm. Keep calling until it serves.
    let mut refused = 0;
    let mut recovered = None;
    let mut serving = None;
    while killed_at.elapsed() < FAILOVER_DEADLINE {
        match log_one(&mut client, "during failover").await {
            Ok(response) => {
                acked.push(response.id);
                recovered.get_or_insert(killed_at.elapsed());
                if gateway.health_status("").await == SERVING {
                    serving = Some(killed_at.elapsed());
                    break;
                }
            }
            Err(status) => {
                assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
                refused += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    let recovered = recovered.expect("the gateway publishes again after failing over");
    let serving = serving.expect("health says SERVING again after failing over");
    eprintln!(
        "failover: node {victim} killed; first confirm {:.2} s later, SERVING {:.2} s later; \
         {refused} calls refused meanwhile",
        recovered.as_secs_f64(),
        serving.as_secs_f64()
    );
    let survivor = (1..=3).find(|&n| n != victim).expect("another node");
    let now_on = node_of_connection(survivor, &publishing)
        .await
        .expect("reconnected");
    assert_ne!(now_on, victim);

    for i in 0..50 {
        let response = log_one(&mut client, &format!("after {i}"))
            .await
            .expect("the surviving nodes confirm");
        acked.push(response.id);
    }

    // Every acknowledged record is in the history, read through the
    // gateway's own (also failed-over) tail connection. A replica that was
    // just promoted may take a moment to show the last records: read again
    // until they are all there, or the deadline says they never will be.
    let mut missing = acked.len();
    let deadline = Instant::now() + FAILOVER_DEADLINE;
    while missing > 0 && Instant::now() < deadline {
        let found: HashSet<String> = history(&mut client)
            .await
            .into_iter()
            .map(|r| r.id)
            .collect();
        missing = acked.iter().filter(|id| !found.contains(*id)).count();
        if missing > 0 {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    assert_eq!(missing, 0, "acknowledged records missing from the history");
    gateway.stop().await.expect("clean stop");
}
