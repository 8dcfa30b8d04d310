//! The `loggate` binary as a person uses it: log, tail, serve.
//!
//! Long because it covers every subcommand end to end as a process.

use std::process::Stdio;
use std::time::Duration;

use loggate::proto::v1::{self as pb, log_gateway_client::LogGatewayClient};
use loggate_testkit::{
    close_connections, eventually_async, fresh_names, history, loggate_bin, publish_raw, record,
    serve_process, spawn_serving, Gateway, Probe, Vhost, AMQP_URL, NOT_SERVING, WAIT,
};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
use tokio::sync::watch;
use tokio_stream::StreamExt;
use tonic::transport::Channel;

fn loggate(args: &[&str]) -> Command {
    let mut command = Command::new(loggate_bin());
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

/// A failure while running (README: exit status 1): one readable line.
fn assert_readable_failure(output: &std::process::Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "a runtime failure: {stderr}");
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

/// A command line that cannot work (README: exit status 2).
fn assert_usage_error(output: &std::process::Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(2), "a usage error: {stderr}");
    assert!(output.stdout.is_empty(), "nothing on stdout");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

/// Everything `pipe` says, as it arrives: lines appended to one string that
/// tests wait on (`wait_for`) and show when they fail.
fn collect(pipe: impl AsyncRead + Unpin + Send + 'static) -> watch::Receiver<String> {
    let (tx, rx) = watch::channel(String::new());
    tokio::spawn(async move {
        let mut lines = BufReader::new(pipe).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            tx.send_modify(|all| {
                all.push_str(&line);
                all.push('\n');
            });
        }
    });
    rx
}

/// Waits (up to `WAIT`) until `said` holds `text`; `who` names the process.
async fn wait_until_said(said: &mut watch::Receiver<String>, text: &str, who: &str) {
    let found = tokio::time::timeout(WAIT, said.wait_for(|all| all.contains(text)))
        .await
        .is_ok_and(|seen| seen.is_ok());
    assert!(
        found,
        "{who} never said {text:?}; it said:\n{}",
        *said.borrow()
    );
}

/// Everything `pipe` says until it closes.
fn read_all(mut pipe: impl AsyncRead + Unpin + Send + 'static) -> tokio::task::JoinHandle<Vec<u8>> {
    tokio::spawn(async move {
        let mut all = Vec::new();
        let _ = tokio::io::AsyncReadExt::read_to_end(&mut pipe, &mut all).await;
        all
    })
}

/// A `loggate tail` process: stdout read line by line, stderr kept (shown
/// when a wait fails). Killed when dropped.
struct Tail {
    child: Child,
    stdout: Lines<BufReader<ChildStdout>>,
    stderr: watch::Receiver<String>,
}

impl Tail {
    fn spawn(url: &str, args: &[&str]) -> Tail {
        let mut all = vec!["tail", "--server", url];
        all.extend_from_slice(args);
        let mut child = loggate(&all)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tail starts");
        let stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let stderr = collect(child.stderr.take().expect("stderr"));
        Tail {
            child,
            stdout,
            stderr,
        }
    }

    /// The next line on stdout; panics (with the tail's stderr) after `WAIT`.
    async fn next_line(&mut self) -> String {
        match tokio::time::timeout(WAIT, self.stdout.next_line()).await {
            Ok(Ok(Some(line))) => line,
            other => panic!(
                "no line from loggate tail ({other:?}); its stderr:\n{}",
                *self.stderr.borrow()
            ),
        }
    }

    /// The message of the next line, which must be a JSON record.
    async fn next_message(&mut self) -> String {
        let line = self.next_line().await;
        let body: serde_json::Value =
            serde_json::from_str(&line).expect("one JSON object per line");
        body["message"].as_str().expect("a message").to_owned()
    }

    /// Panics unless the tail is still following.
    fn assert_running(&mut self) {
        let status = self.child.try_wait().expect("try_wait");
        assert!(
            status.is_none(),
            "loggate tail exited ({status:?}); its stderr:\n{}",
            *self.stderr.borrow()
        );
    }
}

async fn client(url: &str) -> LogGatewayClient<Channel> {
    LogGatewayClient::connect(url.to_owned())
        .await
        .expect("connect")
}

/// Logs one record per message for `service`, in order, in one batch.
async fn log_messages(client: &mut LogGatewayClient<Channel>, service: &str, messages: &[&str]) {
    let records = messages.iter().map(|m| record(service, m)).collect();
    client
        .log_batch(pb::LogBatchRequest { records })
        .await
        .expect("accepted");
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
    let stderr = assert_usage_error(&out);
    assert!(stderr.contains("--level"), "clap names the flag: {stderr}");
}

#[tokio::test]
async fn a_command_line_that_cannot_work_exits_2_naming_the_flag() {
    // Found by the CLI, not clap, but the same kind of error: nothing ran.
    let out = output(&[
        "log",
        "--server",
        "http://127.0.0.1:1",
        "--tls-ca",
        "/nonexistent/ca.pem",
        "--service",
        "s",
        "hi",
    ])
    .await;
    let stderr = assert_usage_error(&out);
    assert!(stderr.starts_with("loggate: "), "{stderr}");
    assert!(stderr.contains("https://"), "{stderr}");

    let out = output(&["tail", "--server", "not a url"]).await;
    let stderr = assert_usage_error(&out);
    assert!(stderr.contains("--server"), "{stderr}");
}

#[tokio::test]
async fn tail_exits_1_when_the_gateway_is_unreachable() {
    let out = output(&["tail", "--server", "http://127.0.0.1:1"]).await;
    let stderr = assert_readable_failure(&out);
    assert!(
        stderr.contains("cannot reach loggate at http://127.0.0.1:1"),
        "{stderr}"
    );
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

/// How often `attached_tail` logs a marker while it waits: a pace, not a
/// deadline (that is `WAIT`).
const MARKER_EVERY: Duration = Duration::from_millis(50);

/// Starts `loggate tail` and returns once it is following. A task logs
/// numbered markers for `marker_service` (level fatal with `k=v`, so they pass
/// every filter the tests use) until the tail prints one; every marker logged
/// after that one is read too, so the next line is the first record logged
/// after this returns.
async fn attached_tail(url: &str, args: &[&str], marker_service: &str) -> Tail {
    let mut tail = Tail::spawn(url, args);
    let mut client = client(url).await;
    let marker = pb::LogRecord {
        level: pb::Level::Fatal as i32,
        attributes: [("k".into(), "v".into())].into(),
        ..record(marker_service, "")
    };
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let logger = tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut logged = 0;
        while tokio::time::Instant::now() < deadline {
            client
                .log(pb::LogRequest {
                    record: Some(pb::LogRecord {
                        message: format!("attach#{logged}#"),
                        ..marker.clone()
                    }),
                })
                .await
                .expect("marker accepted");
            logged += 1;
            tokio::select! {
                _ = &mut stopped => break,
                () = tokio::time::sleep(MARKER_EVERY) => {}
            }
        }
        logged
    });
    let mut line = tail.next_line().await;
    let _ = stop.send(());
    let logged = logger.await.expect("the marker task did not panic");
    let last = format!("attach#{}#", logged - 1);
    loop {
        assert!(line.contains("attach#"), "only markers so far: {line}");
        if line.contains(&last) {
            return tail;
        }
        line = tail.next_line().await;
    }
}

#[tokio::test]
async fn tail_prints_json_lines_in_the_amqp_body_form() {
    let gateway = Gateway::start(&[]).await;
    let mut tail = attached_tail(
        &gateway.url(),
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
        "marker",
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
        let line = tail.next_line().await;
        let body: serde_json::Value =
            serde_json::from_str(&line).expect("one JSON object per line");
        assert_eq!(body["message"], expected);
        assert_eq!(body["service"], "api");
        assert_eq!(body["gateway"], gateway.instance.as_str());
    }
}

#[tokio::test]
async fn tail_prints_text_lines() {
    let gateway = Gateway::start(&[]).await;
    let mut tail = attached_tail(&gateway.url(), &["--level", "warn"], "marker").await;
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
    assert_eq!(
        tail.next_line().await,
        "2023-11-14T22:13:20.005Z warn  checkout pod-9 slow payment ms=950 path=\"/a b\""
    );
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
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "README: status 1; {stderr}");
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
    let stderr = assert_usage_error(&out);
    assert!(stderr.contains("cannot be used with"), "{stderr}");
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
    let mut client = client(&url).await;
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

/// A `loggate serve` process on `listen` (an address of a killed gateway, or
/// `127.0.0.1:0`) for the given exchange and history queue, its stderr kept.
struct GatewayProcess {
    child: Child,
    address: std::net::SocketAddr,
    stderr: watch::Receiver<String>,
}

impl GatewayProcess {
    async fn start(listen: &str, exchange: &str, history: &str) -> GatewayProcess {
        let mut command = Command::new(loggate_bin());
        command
            .args(["serve", "--listen", listen, "--amqp-url", AMQP_URL])
            .args(["--exchange", exchange, "--history-queue", history])
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let (mut child, address) = spawn_serving(command, WAIT)
            .await
            .unwrap_or_else(|error| panic!("loggate serve on {listen}: {error}"));
        let stderr = collect(child.stderr.take().expect("stderr"));
        GatewayProcess {
            child,
            address,
            stderr,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// SIGKILL: no shutdown, no goodbye to its clients.
    async fn kill(&mut self) {
        self.child.kill().await.expect("kill -9");
    }
}

#[tokio::test]
async fn follow_reconnect_continues_after_the_last_record_shown_when_the_gateway_restarts() {
    // Another way in to the same exchange and history, up all along.
    let (exchange, history, names) = fresh_names();
    let other = Gateway::start_on(names, &[]).await;
    let mut first = GatewayProcess::start("127.0.0.1:0", &exchange, &history).await;
    let args = ["--follow-reconnect", "--service", "s", "--output", "json"];
    let mut tail = attached_tail(&first.url(), &args, "s").await;
    log_messages(&mut client(&first.url()).await, "s", &["n0", "n1", "n2"]).await;
    for expected in ["n0", "n1", "n2"] {
        assert_eq!(tail.next_message().await, expected);
    }

    first.kill().await;
    // Logged while nothing listens at the tail's --server, so the tail must
    // find them in the history; another service's record tests the filter.
    let mut other_client = other.client().await;
    log_messages(&mut other_client, "other", &["not s"]).await;
    log_messages(&mut other_client, "s", &["n3"]).await;
    // The same port, so the tail's --server finds the new gateway.
    let second = GatewayProcess::start(&first.address.to_string(), &exchange, &history).await;
    assert_eq!(
        tail.next_message().await,
        "n3",
        "no duplicate, nothing missing"
    );
    // Reconnected: later records follow live.
    log_messages(&mut client(&second.url()).await, "s", &["n4", "n5"]).await;
    assert_eq!(tail.next_message().await, "n4");
    assert_eq!(tail.next_message().await, "n5");
    tail.assert_running();
    wait_until_said(&mut tail.stderr, "reconnecting", "loggate tail").await;
}

#[tokio::test]
async fn follow_reconnect_before_any_record_keeps_what_was_logged_while_the_gateway_was_down() {
    // Another way in to the same exchange and history, up all along.
    let (exchange, history, names) = fresh_names();
    let other = Gateway::start_on(names, &[]).await;
    let mut other_client = other.client().await;
    log_messages(&mut other_client, "s", &["before the tail began"]).await;

    let mut first = GatewayProcess::start("127.0.0.1:0", &exchange, &history).await;
    let mut tail = Tail::spawn(
        &first.url(),
        &["--follow-reconnect", "--service", "s", "--output", "json"],
    );
    // The gateway's one live tail has joined its hub: the tail is open.
    wait_until_said(&mut first.stderr, "live tail hub started", "the gateway").await;
    first.kill().await;
    wait_until_said(&mut tail.stderr, "reconnecting", "loggate tail").await;

    // Nothing listens at the tail's --server while these are logged.
    log_messages(&mut other_client, "s", &["n0", "n1", "n2"]).await;
    let second = GatewayProcess::start(&first.address.to_string(), &exchange, &history).await;
    for expected in ["n0", "n1", "n2"] {
        assert_eq!(tail.next_message().await, expected, "none skipped");
    }
    log_messages(&mut client(&second.url()).await, "s", &["n3"]).await;
    assert_eq!(tail.next_message().await, "n3");
    tail.assert_running();
}

#[tokio::test]
async fn a_tail_given_two_gateways_moves_to_the_other_at_once_when_its_gateway_is_killed() {
    let (exchange, history, _names) = fresh_names();
    let mut first = GatewayProcess::start("127.0.0.1:0", &exchange, &history).await;
    let second = GatewayProcess::start("127.0.0.1:0", &exchange, &history).await;
    log_messages(&mut client(&first.url()).await, "s", &["n0", "n1", "n2"]).await;
    // No --follow-reconnect: having a second gateway is reason enough.
    let servers = format!("{},{}", first.url(), second.url());
    let mut tail = Tail::spawn(&servers, &["--from-start", "--output", "json"]);
    for expected in ["n0", "n1", "n2"] {
        assert_eq!(tail.next_message().await, expected);
    }

    first.kill().await;
    log_messages(&mut client(&second.url()).await, "s", &["n3", "n4"]).await;
    for expected in ["n3", "n4"] {
        assert_eq!(tail.next_message().await, expected, "no gap, no duplicate");
    }
    tail.assert_running();
    wait_until_said(
        &mut tail.stderr,
        "resuming on the next gateway",
        "loggate tail",
    )
    .await;
}

#[tokio::test]
async fn log_given_several_gateways_uses_the_first_that_answers() {
    let gateway = Gateway::start(&[]).await;
    let servers = format!("http://127.0.0.1:1,{}", gateway.url());
    let out = output(&["log", "--server", &servers, "--service", "s", "hi"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = String::from_utf8(out.stdout).expect("utf-8");
    let logged = history(&mut gateway.client().await).await;
    assert_eq!(logged.len(), 1);
    assert_eq!(logged[0].id, id.trim(), "the id printed is the record's");
}

#[tokio::test]
async fn log_tries_the_next_gateway_with_the_same_id_when_one_answers_unavailable() {
    // Up, but locked out of RabbitMQ (and no spool): it answers UNAVAILABLE.
    let vhost = Vhost::create();
    let cut_off = Gateway::start_at(&vhost.url(), &[]).await;
    vhost.revoke();
    close_connections(&cut_off.instance);
    eventually_async("the gateway notices", || async {
        cut_off.health_status("").await == NOT_SERVING
    })
    .await;
    let gateway = Gateway::start(&[]).await;
    let servers = format!("{},{}", cut_off.url(), gateway.url());
    let out = output(&["log", "--server", &servers, "--service", "s", "hi"]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("trying the next gateway"), "{stderr}");
    let id = String::from_utf8(out.stdout).expect("utf-8");
    let logged = history(&mut gateway.client().await).await;
    assert_eq!(logged.len(), 1);
    assert_eq!(logged[0].id, id.trim());
}

#[tokio::test]
async fn log_exits_1_naming_every_gateway_when_none_answers() {
    let servers = "http://127.0.0.1:1,http://127.0.0.1:2";
    let out = output(&["log", "--server", servers, "--service", "s", "hi"]).await;
    let stderr = assert_readable_failure(&out);
    assert!(
        stderr.contains("any of the 2 gateways")
            && stderr.contains("http://127.0.0.1:1:")
            && stderr.contains("http://127.0.0.1:2:"),
        "{stderr}"
    );
}

#[tokio::test]
async fn a_bad_address_anywhere_in_the_server_list_is_a_usage_error() {
    // The first one works; the second must still be refused up front.
    let gateway = Gateway::start(&[]).await;
    let servers = format!("{},http://[x", gateway.url());
    let out = output(&["log", "--server", &servers, "--service", "s", "hi"]).await;
    let stderr = assert_usage_error(&out);
    assert!(stderr.contains("http://[x"), "{stderr}");
    assert!(history(&mut gateway.client().await).await.is_empty());
}

/// `loggate tail ARGS --history-only --output json` on `gateway`: the messages.
async fn tail_history(gateway: &Gateway, args: &[&str]) -> Vec<String> {
    let url = gateway.url();
    let mut all = vec![
        "tail",
        "--server",
        &url,
        "--history-only",
        "--output",
        "json",
    ];
    all.extend_from_slice(args);
    let out = output(&all).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    json_messages(&out.stdout)
}

/// Publishes a record straight to the exchange, as another producer of the
/// AMQP contract could, with the arrival time it claims.
async fn publish_arrived_at(gateway: &Gateway, message: &str, received: OffsetDateTime) {
    let received = received.format(&Rfc3339).expect("RFC 3339");
    let body = serde_json::json!({
        "id": loggate_testkit::unique("id"),
        "time": received,
        "received_time": received,
        "service": "s",
        "level": "info",
        "message": message,
    });
    publish_raw(
        &gateway.exchange,
        "s.info",
        "application/json",
        body.to_string().as_bytes(),
    )
    .await;
}

#[tokio::test]
async fn tail_since_leaves_out_records_that_arrived_before() {
    let gateway = Gateway::start(&[]).await;
    let now = OffsetDateTime::now_utc();
    publish_arrived_at(&gateway, "an hour ago", now - time::Duration::hours(1)).await;
    publish_arrived_at(
        &gateway,
        "ten minutes ago",
        now - time::Duration::minutes(10),
    )
    .await;
    log_messages(&mut gateway.client().await, "s", &["just now"]).await;
    assert_eq!(
        tail_history(&gateway, &["--since", "30m"]).await,
        ["ten minutes ago", "just now"]
    );
}

#[tokio::test]
async fn tail_start_time_leaves_out_records_that_arrived_before_it() {
    let gateway = Gateway::start(&[]).await;
    let mut client = gateway.client().await;
    log_messages(&mut client, "s", &["early 1", "early 2"]).await;
    let last_early = history(&mut client)
        .await
        .iter()
        .map(|r| {
            let t = r.received_time.expect("stamped");
            i128::from(t.seconds) * 1_000_000_000 + i128::from(t.nanos)
        })
        .max()
        .expect("two records");
    // One nanosecond after the last early record arrived.
    let start = OffsetDateTime::from_unix_timestamp_nanos(last_early + 1)
        .expect("a time")
        .format(&Rfc3339)
        .expect("RFC 3339");
    log_messages(&mut client, "s", &["late 1", "late 2"]).await;
    assert_eq!(
        tail_history(&gateway, &["--start-time", &start]).await,
        ["late 1", "late 2"]
    );
}

#[tokio::test]
async fn tail_trace_id_prints_only_that_trace() {
    let gateway = Gateway::start(&[]).await;
    let (wanted, another) = (
        "4bf92f3577b34da6a3ce929d0e0e4736",
        "0af7651916cd43dd8448eb211c80319c",
    );
    let traced = |message: &str, trace_id: &str| pb::LogRecord {
        trace_id: trace_id.into(),
        ..record("s", message)
    };
    gateway
        .client()
        .await
        .log_batch(pb::LogBatchRequest {
            records: vec![
                traced("another trace", another),
                traced("wanted 1", wanted),
                record("s", "no trace"),
                traced("another trace again", another),
                traced("wanted 2", wanted),
            ],
        })
        .await
        .expect("accepted");
    assert_eq!(
        tail_history(&gateway, &["--from-start", "--trace-id", wanted]).await,
        ["wanted 1", "wanted 2"]
    );
}

#[tokio::test]
async fn tail_contains_prints_only_messages_holding_the_text() {
    let gateway = Gateway::start(&[]).await;
    log_messages(
        &mut gateway.client().await,
        "s",
        &[
            "disk ok",
            "disk full on /var",
            "cpu fine",
            "memory full",
            "fu ll",
        ],
    )
    .await;
    assert_eq!(
        tail_history(&gateway, &["--from-start", "--contains", "full"]).await,
        ["disk full on /var", "memory full"]
    );
}

/// Panics if `secrets` shows up in any output of `out`.
fn assert_never_printed(out: &std::process::Output, secrets: &[&str]) {
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    for secret in secrets {
        assert!(!all.contains(secret), "{secret:?} was printed:\n{all}");
    }
}

#[tokio::test]
async fn serve_never_prints_a_password_of_a_url_list() {
    // The second password is percent-encoded: "s3cr@t,x/pw2".
    let out = output(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--amqp-url",
        "amqp://guest:pw1-hunter2@127.0.0.1:1/%2f,amqp://guest:s3cr%40t%2Cx%2Fpw2@127.0.0.1:2/%2f",
        "--broker-wait",
        "1s",
    ])
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("127.0.0.1:1, 127.0.0.1:2"), "{stderr}");
    assert_never_printed(&out, &["hunter2", "s3cr", "pw2"]);
}

#[tokio::test]
async fn serve_never_prints_the_password_of_a_node_it_fails_over_from() {
    let (exchange, history, _names) = fresh_names();
    let urls = format!("amqp://guest:s3cr%2Fpw-hunter2@127.0.0.1:1/%2f,{AMQP_URL}");
    let mut command = loggate(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--amqp-url",
        &urls,
        "--exchange",
        &exchange,
        "--history-queue",
        &history,
    ]);
    // Every log line the gateway has, lapin's too.
    command
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let (mut child, address) = spawn_serving(command, WAIT).await.expect("serves");
    // Read as it runs: a full pipe would stall a gateway logging at debug.
    let stdout = read_all(child.stdout.take().expect("stdout"));
    let stderr = read_all(child.stderr.take().expect("stderr"));
    // It connected through the second URL; a record goes all the way.
    log_messages(
        &mut client(&format!("http://{address}")).await,
        "s",
        &["hi"],
    )
    .await;
    let pid = child.id().expect("running").to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    let status = tokio::time::timeout(WAIT, child.wait())
        .await
        .expect("exits after SIGTERM")
        .expect("status");
    let out = std::process::Output {
        status,
        stdout: stdout.await.expect("read stdout"),
        stderr: stderr.await.expect("read stderr"),
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("127.0.0.1:1"),
        "the failed node is named: {stderr}"
    );
    assert_never_printed(&out, &["hunter2", "s3cr"]);
}

#[tokio::test]
async fn help_never_shows_the_amqp_url_from_the_environment() {
    let with_secret_url = |args: &'static [&'static str]| async move {
        let mut command = loggate(args);
        command.env(
            "LOGGATE_AMQP_URL",
            "amqp://guest:env-hunter2@127.0.0.1:1/%2f",
        );
        tokio::time::timeout(WAIT, command.output())
            .await
            .expect("in time")
            .expect("runs")
    };
    for args in [&["serve", "--help"][..], &["serve", "-h"], &["--help"]] {
        let out = with_secret_url(args).await;
        assert!(out.status.success(), "{args:?}");
        assert_never_printed(&out, &["hunter2"]);
    }
    let help = with_secret_url(&["serve", "--help"]).await.stdout;
    assert!(
        String::from_utf8_lossy(&help).contains("[env: LOGGATE_AMQP_URL]"),
        "the variable is named, its value is not"
    );
    // A usage error shows the usage, not the value either.
    let out = with_secret_url(&["serve", "--amqp-url-file", "/nonexistent"]).await;
    assert_usage_error(&out);
    assert_never_printed(&out, &["hunter2"]);
}
