//! `loggate chaos` with the two faults that stay inside the run's own vhost
//! (so they can run beside the other tests): it must see every acknowledged
//! record in the history and say so. The broker-wide faults (restart, alarm)
//! and kill-node are run by hand; README.md shows their numbers.

use std::process::Command;

fn chaos(args: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_loggate-bench"))
        .arg("chaos")
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("chaos runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    (output.status.success(), format!("{stdout}\n{stderr}"))
}

/// The number after `label` in the report.
fn number(report: &str, label: &str) -> u64 {
    report
        .split(label)
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {label:?} in {report}"))
}

#[test]
fn chaos_close_connections_loses_nothing() {
    let (ok, report) = chaos(&[
        "close-connections",
        "--duration",
        "4s",
        "--fault-at",
        "1s",
        "--rate",
        "1000",
    ]);
    assert!(ok, "{report}");
    assert!(number(&report, "history:  acked ") > 1_000, "{report}");
    assert_eq!(number(&report, "missing "), 0, "{report}");
    assert!(report.contains("recovery: gateway SERVING"), "{report}");
}

#[test]
fn chaos_kill_gateway_with_a_spool_loses_nothing() {
    let (ok, report) = chaos(&[
        "kill-gateway",
        "--duration",
        "6s",
        "--fault-at",
        "1s",
        "--outage",
        "2s",
        "--rate",
        "1000",
    ]);
    assert!(ok, "{report}");
    let spooled: u64 = report
        .split(" answered spooled")
        .next()
        .and_then(|before| before.split_whitespace().last())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no spooled count in {report}"));
    assert!(spooled > 0, "some records were spooled: {report}");
    assert_eq!(number(&report, "missing "), 0, "{report}");
}
