//! A broker resource alarm. Its own test binary, with one test: an alarm
//! blocks every publisher on the broker, and cargo runs test binaries one
//! after another, so nothing else is publishing meanwhile.

use loggate::proto::v1 as pb;
use loggate_testkit::{
    eventually_async, history, rabbitmqctl, record, unique, Gateway, Rabbitmqctl, NOT_SERVING,
    SERVING, WAIT,
};
use tonic::Code;

/// Raises a memory alarm (high watermark 0) and restores the previous
/// watermark when dropped, pass or fail.
struct MemoryAlarm {
    previous: String,
}

impl MemoryAlarm {
    fn raise() -> MemoryAlarm {
        let previous = rabbitmqctl(&["eval", "vm_memory_monitor:get_vm_memory_high_watermark()."])
            .trim()
            .to_owned();
        let previous = if previous.parse::<f64>().is_ok() {
            previous
        } else {
            "0.4".to_owned()
        };
        rabbitmqctl(&["set_vm_memory_high_watermark", "0"]);
        MemoryAlarm { previous }
    }
}

impl Drop for MemoryAlarm {
    fn drop(&mut self) {
        // No panic here: this runs while a failing test unwinds too.
        let _ =
            Rabbitmqctl::default().run_blocking(&["set_vm_memory_high_watermark", &self.previous]);
    }
}

/// A spool directory of the test's own, removed when dropped.
struct SpoolDir(std::path::PathBuf);

impl SpoolDir {
    fn new() -> SpoolDir {
        SpoolDir(std::env::temp_dir().join(unique("alarm-spool")))
    }

    fn path(&self) -> &str {
        self.0.to_str().expect("a UTF-8 temporary path")
    }
}

impl Drop for SpoolDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn log(message: &str) -> pb::LogRequest {
    pb::LogRequest {
        record: Some(record("alarm", message)),
    }
}

/// One test, so that one alarm window serves every promise about it (tests
/// of a binary run in parallel, and an alarm is broker-wide).
#[tokio::test]
async fn a_memory_alarm_turns_health_off_and_calls_unavailable_until_it_clears() {
    let gateway = Gateway::start(&["--publish-timeout", "2s"]).await;
    // Its publish timeout is far longer than the test waits for an answer:
    // only a call spooled at once can be answered in time.
    let spool = SpoolDir::new();
    let spooling =
        Gateway::start(&["--publish-timeout", "120s", "--spool-dir", spool.path()]).await;
    let mut client = gateway.client().await;
    let mut spooling_client = spooling.client().await;
    client
        .log(log("before"))
        .await
        .expect("accepted before the alarm");

    let alarm = MemoryAlarm::raise();
    // RabbitMQ blocks a connection when it next publishes.
    let status = tokio::time::timeout(WAIT, client.log(log("during")))
        .await
        .expect("answered within --publish-timeout, not left waiting")
        .expect_err("not confirmed while the broker is blocked");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    eventually_async("health goes NOT_SERVING while blocked", || async {
        gateway.health_status("").await == NOT_SERVING
    })
    .await;

    // With a spool: once the block is known, calls are spooled at once.
    // (The first call may be the one that finds the connection blocked.)
    let _ = tokio::time::timeout(WAIT, spooling_client.log(log("finds the block"))).await;
    eventually_async("the spooling gateway knows it is blocked", || async {
        spooling.health_status("").await == NOT_SERVING
    })
    .await;
    let spooled = tokio::time::timeout(WAIT, spooling_client.log(log("spooled")))
        .await
        .expect("answered at once, not after --publish-timeout")
        .expect("spooled")
        .into_inner();
    assert!(spooled.spooled, "{spooled:?}");

    // Tails read on their own connection, which the alarm does not block.
    let during = tokio::time::timeout(WAIT, history(&mut client))
        .await
        .expect("the history is read during the alarm");
    assert!(during.iter().any(|r| r.message == "before"), "{during:?}");

    drop(alarm);
    eventually_async("health returns to SERVING", || async {
        gateway.health_status("").await == SERVING
    })
    .await;
    client
        .log(log("after"))
        .await
        .expect("accepted after the alarm");
    // And the spooled record reaches the history once the broker takes records.
    eventually_async("the spooled record is drained", || {
        let mut client = spooling_client.clone();
        async move {
            history(&mut client)
                .await
                .iter()
                .any(|r| r.message == "spooled")
        }
    })
    .await;
}
