//! A broker resource alarm. Its own test binary, with one test: an alarm
//! blocks every publisher on the broker, and cargo runs test binaries one
//! after another, so nothing else is publishing meanwhile.

use std::time::Duration;

use loggate::proto::v1 as pb;
use loggate_testkit::{
    eventually_async, rabbitmqctl, record, Gateway, Rabbitmqctl, NOT_SERVING, SERVING,
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

#[tokio::test]
async fn a_memory_alarm_turns_health_off_and_calls_unavailable_until_it_clears() {
    let gateway = Gateway::start(&["--publish-timeout", "2s"]).await;
    let mut client = gateway.client().await;
    let log = |message: &str| pb::LogRequest {
        record: Some(record("alarm", message)),
    };
    client
        .log(log("before"))
        .await
        .expect("accepted before the alarm");

    let alarm = MemoryAlarm::raise();
    // RabbitMQ blocks a connection when it next publishes.
    let started = tokio::time::Instant::now();
    let status = client
        .log(log("during"))
        .await
        .expect_err("not confirmed while the broker is blocked");
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "bounded by --publish-timeout"
    );
    eventually_async("health goes NOT_SERVING while blocked", || async {
        gateway.health_status("").await == NOT_SERVING
    })
    .await;

    drop(alarm);
    eventually_async("health returns to SERVING", || async {
        gateway.health_status("").await == SERVING
    })
    .await;
    client
        .log(log("after"))
        .await
        .expect("accepted after the alarm");
}
