//! A small `loggate bench` run: checks the verification, not the speed.
//!
//! `loggate-bench` starts the `loggate` binary cargo built beside it
//! (`target/debug/loggate`): `cargo test --workspace` builds it; after
//! `cargo test -p loggate-bench` alone, a missing one is reported by name.

use std::process::Command;

#[test]
fn bench_smoke_run_verifies_every_acked_record() {
    for mode in ["unary", "batch", "stream"] {
        let output = Command::new(env!("CARGO_BIN_EXE_loggate-bench"))
            .args([
                "bench",
                "--mode",
                mode,
                "--records",
                "300",
                "--concurrency",
                "3",
                "--batch-size",
                "25",
                "--direct-records",
                "300",
            ])
            .env_remove("RUST_LOG")
            .output()
            .expect("bench runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{mode}: {stdout}\n{stderr}");
        assert!(
            stdout.contains("verified: 300 acked, 300 found in the history stream, 0 missing, 0 duplicated; 0 failed calls"),
            "{mode}: {stdout}"
        );
        assert!(stdout.contains(&format!("gateway ({mode})")), "{stdout}");
        let comparison = if mode == "unary" {
            "latency vs direct round trip"
        } else {
            "ratio gateway/direct"
        };
        assert!(stdout.contains(comparison), "{stdout}");
        assert!(stdout.contains("peak RSS"), "{stdout}");
    }
}

#[test]
fn calls_share_one_connection_and_the_broker_cpu_is_reported() {
    let output = Command::new(env!("CARGO_BIN_EXE_loggate-bench"))
        .args([
            "bench",
            "--mode",
            "batch",
            "--records",
            "400",
            "--concurrency",
            "4",
            "--connections",
            "1",
            "--batch-size",
            "50",
            "--direct-records",
            "300",
        ])
        .env_remove("RUST_LOG")
        .output()
        .expect("bench runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("concurrency=4 connections=1 "), "{stdout}");
    assert!(
        stdout.contains("verified: 400 acked, 400 found in the history stream, 0 missing, 0 duplicated; 0 failed calls"),
        "{stdout}"
    );
    // The broker runs on this machine (the tests need it there): its CPU is
    // read for the direct runs and for the gateway's load.
    let broker = stdout
        .lines()
        .find(|l| l.starts_with("broker process (pid "))
        .unwrap_or_else(|| panic!("no broker line: {stdout}"));
    for part in [
        "through the gateway ",
        "direct 1 channel ",
        "4 channels ",
        "gateway/direct: ",
    ] {
        assert!(broker.contains(part), "{broker}");
    }
}

#[test]
fn bench_with_packed_messages_verifies_every_record() {
    let output = Command::new(env!("CARGO_BIN_EXE_loggate-bench"))
        .args([
            "bench",
            "--mode",
            "batch",
            "--records",
            "1000",
            "--concurrency",
            "2",
            "--batch-size",
            "100",
            "--amqp-batch-records",
            "50",
            "--skip-direct",
        ])
        .env_remove("RUST_LOG")
        .output()
        .expect("bench runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(
        stdout.contains(
            "verified: 1000 acked, 1000 found in the history stream, 0 missing, 0 duplicated"
        ),
        "{stdout}"
    );
}

#[test]
fn bench_tail_and_replay_smoke_runs_count_every_delivery() {
    let run = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_loggate-bench"))
            .arg("bench")
            .args(args)
            .env_remove("RUST_LOG")
            .output()
            .expect("bench runs");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "{args:?}: {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    };
    let tail = run(&[
        "--mode",
        "tail",
        "--followers",
        "20",
        "--services",
        "4",
        "--rate",
        "200",
        "--duration",
        "1s",
    ]);
    assert!(
        tail.contains("200 records sent (0 failed calls), 1000 deliveries expected, 1000 delivered, 0 lost, 0 duplicated"),
        "{tail}"
    );
    let replay = run(&["--mode", "replay", "--records", "500"]);
    assert!(replay.contains("replay: 500 of 500 records"), "{replay}");
}

#[test]
fn compare_auth_smoke_run_verifies_both_sides() {
    // Plain and token over TLS: the TLS side also proves the generated CA,
    // certificate and auth file work together. Four phases (ABBA), 100
    // records each, so each side must have verified 200.
    for extra in [&[][..], &["--tls"][..]] {
        let output = Command::new(env!("CARGO_BIN_EXE_loggate-bench"))
            .args([
                "bench",
                "--mode",
                "unary",
                "--records",
                "200",
                "--concurrency",
                "2",
                "--compare-auth",
                "--skip-direct",
            ])
            .args(extra)
            .env_remove("RUST_LOG")
            .env_remove("LOGGATE_TOKEN")
            .output()
            .expect("bench runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{extra:?}: {stdout}\n{stderr}");
        let on = if extra.is_empty() {
            "auth on (token)"
        } else {
            "auth on (token+TLS)"
        };
        for side in ["auth off", on] {
            let line = format!(
                "verified {side}: 200 acked, 200 found in the history stream, 0 missing, 0 duplicated; 0 failed calls"
            );
            assert!(stdout.contains(&line), "{extra:?}: {stdout}");
        }
        assert!(stdout.contains("ABBA (off,on,on,off)"), "{stdout}");
        assert!(
            stdout.contains(&format!("{on} / auth off: throughput")),
            "{stdout}"
        );
    }
}
