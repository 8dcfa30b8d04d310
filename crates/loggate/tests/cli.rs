//! The `loggate` binary as a person uses it: log, tail, serve.
//!
//! Long because it covers every subcommand end to end as a process.

use std::process::Stdio;
use std::time::Duration;

use loggate::proto::v1 as pb;
use loggate_testkit::{fresh_names, record, serve_process, Gateway, Probe, AMQP_URL, WAIT};
use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tokio_stream::StreamExt;

const BIN: &str = env!("CARGO_BIN_EXE_loggate");

fn loggate(args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    command
}

async fn output(args: &[&str]) -> std::process::Output {
    tokio::time::timeout(WAIT, loggate(args).output())
        .await
        .expect("the command finishes in time")
        .expect("the binary runs")
}

fn assert_readable_failure(output: &std::process::Output) -> String {
    assert!(!output.status.success(), "should fail");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(
        stderr.starts_with("loggate: "),
        "one readable line: {stderr}"
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
    stderr
}

#[tokio::test]
async fn log_prints_the_id_of_the_published_record() {
    let gateway = Gateway::start(&[]).await;
    let mut probe = Probe::bind(&gateway.exchange, "#").await;
    let out = output(&[
        "log",
        "--server",
        &gateway.url(),
        "--service",
        "billing",
        "--level",
        "error",
        "--node",
        "pod-3",
        "--attr",
        "order=42",
        "--attr",
        "note=a=b",
        "card declined",
    ])
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8(out.stdout).expect("utf-8");
    let id = id.trim();

    let body = probe.next_json().await;
    assert_eq!(body["id"], id);
    assert_eq!(body["service"], "billing");
    assert_eq!(body["level"], "error");
    assert_eq!(body["node"], "pod-3");
    assert_eq!(body["message"], "card declined");
    assert_eq!(
        body["attributes"],
        serde_json::json!({"order": "42", "note": "a=b"})
    );
}

#[tokio::test]
async fn log_refuses_bad_input_with_a_readable_error() {
    let gateway = Gateway::start(&[]).await;
    let out = output(&[
        "log",
        "--server",
        &gateway.url(),
        "--service",
        "bad.name",
        "hi",
    ])
    .await;
    let stderr = assert_readable_failure(&out);
    assert!(stderr.contains("record.service"), "{stderr}");

    let out = output(&[
        "log",
        "--server",
        &gateway.url(),
        "--service",
        "s",
        "--level",
        "loud",
        "hi",
    ])
    .await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--level"), "clap names the flag: {stderr}");
}

#[tokio::test]
async fn log_reports_an_unreachable_server() {
    let out = output(&[
        "log",
        "--server",
        "http://127.0.0.1:1",
        "--service",
        "s",
        "hi",
    ])
    .await;
    let stderr = assert_readable_failure(&out);
    assert!(
        stderr.contains("cannot reach loggate at http://127.0.0.1:1"),
        "{stderr}"
    );
}

/// Starts `loggate tail` and waits until it is following: keeps logging a
/// marker record until the tail prints one.
async fn attached_tail(gateway: &Gateway, args: &[&str]) -> (Child, Lines<BufReader<ChildStdout>>) {
    let url = gateway.url();
    let mut all = vec!["tail", "--server", &url];
    all.extend_from_slice(args);
    let mut child = loggate(&all)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("tail starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let mut client = gateway.client().await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        client
            .log(pb::LogRequest {
                // Passes every filter the tests use: --service marker, --level, --attr k=v.
                record: Some(pb::LogRecord {
                    level: pb::Level::Fatal as i32,
                    attributes: [("k".into(), "v".into())].into(),
                    ..record("marker", "attach")
                }),
            })
            .await
            .expect("marker accepted");
        if let Ok(line) = tokio::time::timeout(Duration::from_millis(200), lines.next_line()).await
        {
            let line = line.expect("read").expect("a line");
            assert!(line.contains("marker"), "{line}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "tail never attached"
        );
    }
    // Drain further markers that may already be on their way.
    while let Ok(Ok(Some(line))) =
        tokio::time::timeout(Duration::from_millis(300), lines.next_line()).await
    {
        assert!(line.contains("marker"), "{line}");
    }
    (child, lines)
}

#[tokio::test]
async fn tail_prints_json_lines_in_the_amqp_body_form() {
    let gateway = Gateway::start(&[]).await;
    let (mut child, mut lines) = attached_tail(
        &gateway,
        &[
            "--output",
            "json",
            "--service",
            "marker",
            "--service",
            "api",
            "--attr",
            "k=v",
        ],
    )
    .await;
    let mut client = gateway.client().await;
    let records = vec![
        pb::LogRecord {
            attributes: [("k".into(), "v".into())].into(),
            ..record("api", "first")
        },
        record("api", "no attribute: filtered out"),
        pb::LogRecord {
            attributes: [("k".into(), "v".into())].into(),
            ..record("other", "other service: filtered out")
        },
        pb::LogRecord {
            attributes: [("k".into(), "v".into())].into(),
            ..record("api", "second")
        },
    ];
    client
        .log_batch(pb::LogBatchRequest { records })
        .await
        .expect("accepted");
    for expected in ["first", "second"] {
        let line = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .expect("in time")
            .expect("read")
            .expect("a line");
        let body: serde_json::Value =
            serde_json::from_str(&line).expect("one JSON object per line");
        assert_eq!(body["message"], expected);
        assert_eq!(body["service"], "api");
        assert_eq!(body["gateway"], gateway.instance.as_str());
    }
    child.kill().await.expect("kill");
}

#[tokio::test]
async fn tail_prints_text_lines() {
    let gateway = Gateway::start(&[]).await;
    let (mut child, mut lines) = attached_tail(&gateway, &["--level", "warn"]).await;
    gateway
        .client()
        .await
        .log_batch(pb::LogBatchRequest {
            records: vec![
                record("quiet", "info is below warn"),
                pb::LogRecord {
                    level: pb::Level::Warn as i32,
                    node: "pod-9".into(),
                    attributes: [("ms".into(), "950".into()), ("path".into(), "/a b".into())]
                        .into(),
                    time: Some(prost_types::Timestamp {
                        seconds: 1_700_000_000,
                        nanos: 5_000_000,
                    }),
                    ..record("checkout", "slow payment")
                },
            ],
        })
        .await
        .expect("accepted");
    let line = tokio::time::timeout(WAIT, lines.next_line())
        .await
        .expect("in time")
        .expect("read")
        .expect("a line");
    assert_eq!(
        line,
        "2023-11-14T22:13:20.005Z warn  checkout pod-9 slow payment ms=950 path=\"/a b\""
    );
    child.kill().await.expect("kill");
}

#[tokio::test]
async fn tail_text_shows_terminal_escapes_instead_of_obeying_them() {
    let gateway = Gateway::start(&[]).await;
    gateway
        .client()
        .await
        .log(pb::LogRequest {
            record: Some(pb::LogRecord {
                attributes: [("k\x1b[2J".into(), "v\x1b[0m".into())].into(),
                ..record(
                    "hostile",
                    "\x1b[31mred \x1b]0;pwned\x07\n2023-11-14T22:13:20.005Z error admin - fake line",
                )
            }),
        })
        .await
        .expect("accepted: a message may hold any text");
    let out = output(&[
        "tail",
        "--server",
        &gateway.url(),
        "--from-start",
        "--limit",
        "1",
    ])
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).expect("UTF-8");
    assert!(!stdout.contains(['\x1b', '\x07']), "{stdout:?}");
    assert_eq!(stdout.matches('\n').count(), 1, "one line: {stdout:?}");
    assert!(
        stdout.contains(
            r" hostile - \e[31mred \e]0;pwned\u{7}\n2023-11-14T22:13:20.005Z error admin - fake line k\e[2J=v\e[0m"
        ),
        "{stdout}"
    );
}

#[tokio::test]
async fn serve_exits_non_zero_naming_the_broker_when_it_never_answers() {
    let out = output(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--amqp-url",
        "amqp://guest:hunter2@127.0.0.1:1/%2f",
        "--broker-wait",
        "1s",
    ])
    .await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("127.0.0.1:1"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "never the password: {stderr}");
    assert!(
        stderr
            .lines()
            .last()
            .is_some_and(|l| l.starts_with("loggate: ")),
        "{stderr}"
    );
}

#[tokio::test]
async fn serve_exits_zero_on_sigterm() {
    let (exchange, history, _names) = fresh_names();
    // The helper learns the bound address through --address-file.
    let (mut child, url) = serve_on(&exchange, &history).await;
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");

    let pid = child.id().expect("running").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exits within 10 s")
        .expect("status");
    assert!(status.success(), "exit 0 on SIGTERM, got {status}");
}

async fn log_numbered(gateway: &Gateway, count: usize) {
    let records = (0..count)
        .map(|i| record("hist", &format!("n{i}")))
        .collect();
    gateway
        .client()
        .await
        .log_batch(pb::LogBatchRequest { records })
        .await
        .expect("accepted");
}

fn json_messages(stdout: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|line| {
            let body: serde_json::Value = serde_json::from_str(line).expect("JSON line");
            body["message"].as_str().expect("message").to_owned()
        })
        .collect()
}

#[tokio::test]
async fn tail_from_start_with_a_limit_prints_history_and_exits() {
    let gateway = Gateway::start(&[]).await;
    log_numbered(&gateway, 5).await;
    let out = output(&[
        "tail",
        "--server",
        &gateway.url(),
        "--from-start",
        "--limit",
        "3",
        "--output",
        "json",
    ])
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json_messages(&out.stdout), ["n0", "n1", "n2"]);
}

#[tokio::test]
async fn ctrl_c_prints_a_token_that_resumes_after_the_last_record_shown() {
    let gateway = Gateway::start(&[]).await;
    log_numbered(&gateway, 6).await;
    let url = gateway.url();
    let mut child = loggate(&["tail", "--server", &url, "--from-start", "--output", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tail starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    for expected in ["n0", "n1", "n2", "n3", "n4", "n5"] {
        let line = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .expect("in time")
            .expect("read")
            .expect("a line");
        assert!(line.contains(expected), "{line}");
    }
    let pid = child.id().expect("running").to_string();
    std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill runs");
    let out = tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .expect("exits after Ctrl-C")
        .expect("output");
    assert!(out.status.success(), "Ctrl-C is a normal way to stop");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let token = stderr
        .split("--resume ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("a resume hint on stderr: {stderr}"))
        .to_owned();

    log_numbered_from(&gateway, 6, 2).await;
    let out = output(&[
        "tail", "--server", &url, "--resume", &token, "--limit", "2", "--output", "json",
    ])
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json_messages(&out.stdout), ["n6", "n7"]);
}

async fn log_numbered_from(gateway: &Gateway, first: usize, count: usize) {
    let records = (first..first + count)
        .map(|i| record("hist", &format!("n{i}")))
        .collect();
    gateway
        .client()
        .await
        .log_batch(pb::LogBatchRequest { records })
        .await
        .expect("accepted");
}

#[tokio::test]
async fn start_flags_exclude_each_other() {
    let out = output(&["tail", "--from-start", "--since", "5m"]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot be used with"));
}

#[tokio::test]
async fn tail_history_only_prints_the_history_and_exits() {
    let gateway = Gateway::start(&[]).await;
    log_numbered(&gateway, 4).await;
    let out = output(&[
        "tail",
        "--server",
        &gateway.url(),
        "--from-start",
        "--history-only",
        "--output",
        "json",
    ])
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json_messages(&out.stdout), ["n0", "n1", "n2", "n3"]);
}

/// Starts `loggate serve` on the given names; returns the process and its URL.
async fn serve_on(exchange: &str, history: &str) -> (Child, String) {
    serve_process(&[
        "--amqp-url",
        AMQP_URL,
        "--exchange",
        exchange,
        "--history-queue",
        history,
    ])
    .await
}

#[tokio::test]
async fn a_tail_resumes_on_another_gateway_after_the_first_is_killed() {
    let (exchange, history, _names) = fresh_names();
    let (mut first, url) = serve_on(&exchange, &history).await;
    let mut client = pb::log_gateway_client::LogGatewayClient::connect(url.clone())
        .await
        .expect("connect");
    let records = (0..6).map(|i| record("k", &format!("n{i}"))).collect();
    client
        .log_batch(pb::LogBatchRequest { records })
        .await
        .expect("accepted");
    let mut stream = client
        .tail(pb::TailRequest {
            start: Some(pb::tail_request::Start::FromBeginning(true)),
            ..Default::default()
        })
        .await
        .expect("tail")
        .into_inner();
    let mut token = String::new();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let response = tokio::time::timeout(WAIT, stream.next())
            .await
            .expect("in time")
            .expect("open")
            .expect("ok");
        if let Some(pb::tail_response::Event::Record(r)) = response.event {
            seen.push(r.message);
            token = response.resume_token;
        }
    }
    assert_eq!(seen, ["n0", "n1", "n2"]);

    first.kill().await.expect("kill -9");
    let (_second, url) = serve_on(&exchange, &history).await;
    let out = output(&[
        "tail", "--server", &url, "--resume", &token, "--limit", "3", "--output", "json",
    ])
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json_messages(&out.stdout), ["n3", "n4", "n5"]);
}
