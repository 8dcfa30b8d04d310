//! The AMQP side of "only the right callers": `amqps://` really is TLS (a
//! RabbitMQ node of this test's own with a TLS-only listener, from
//! scripts/rabbitmq-tls, and certificates from a test CA), an untrusted
//! broker is refused with a readable error, and the URL's password never
//! shows in anything the gateway prints, nor on its command line with
//! `--amqp-url-file`.
//!
//! The TLS node takes seconds to start, so one test owns it from start to
//! stop; the other tests use the machine's default broker or none.

use std::{path::Path, process::Stdio, time::Duration};

use loggate::proto::v1 as pb;
use loggate_testkit::{
    fresh_names, history, loggate_bin, record, spawn_serving, Gateway, TestPki, AMQP_URL, WAIT,
};
use tokio::process::Command;

/// The script is the workspace's, two levels above this crate.
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scripts/rabbitmq-tls");
/// The TLS node's URL (the script's default port). `localhost`: the name its
/// certificate carries, and a loopback address, as RabbitMQ's guest needs.
const TLS_URL: &str = "amqps://guest:guest@localhost:5791/%2f";
/// The password that must never be printed.
const SECRET: &str = "s3cret-pw";

/// The TLS node, stopped (and its data deleted) when the test ends, pass or fail.
struct TlsNode;

impl TlsNode {
    fn start(ca: &Path, cert: &Path, key: &Path) -> TlsNode {
        let output = std::process::Command::new(SCRIPT)
            .arg("start")
            .args([ca, cert, key])
            .stdin(Stdio::null())
            .output()
            .expect("scripts/rabbitmq-tls runs");
        // Built before the check, so a failed start still stops what began.
        let node = TlsNode;
        assert!(
            output.status.success(),
            "starting the TLS node failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), TLS_URL);
        node
    }
}

impl Drop for TlsNode {
    fn drop(&mut self) {
        let _ = std::process::Command::new(SCRIPT)
            .arg("stop")
            .stdin(Stdio::null())
            .output();
    }
}

/// Runs `loggate serve` with `args` (on a free port, waiting at most 2 s for
/// the broker), expects it to fail, and returns its stderr.
async fn serve_fails(args: &[&str]) -> String {
    let output = tokio::time::timeout(
        Duration::from_secs(30),
        Command::new(loggate_bin())
            .args(["serve", "--listen", "127.0.0.1:0", "--broker-wait", "2s"])
            .args(args)
            .env_remove("LOGGATE_AMQP_URL")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("serve gives up in time")
    .expect("loggate runs");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    // Not necessarily the last line: lapin's I/O thread may still log after it.
    assert!(
        stderr.lines().any(|line| line.starts_with("loggate: ")),
        "{stderr}"
    );
    stderr
}

async fn log_one(
    client: &mut loggate::proto::v1::log_gateway_client::LogGatewayClient<
        tonic::transport::Channel,
    >,
    message: &str,
) -> String {
    client
        .log(pb::LogRequest {
            record: Some(record("tls-test", message)),
        })
        .await
        .expect("confirmed")
        .into_inner()
        .id
}

#[tokio::test]
async fn amqps_uses_tls_trusting_the_given_ca_and_refuses_an_untrusted_broker() {
    let pki = TestPki::new("loggate amqps test CA");
    let server = pki.server("rabbit");
    let _node = TlsNode::start(&pki.ca, &server.cert, &server.key);
    let ca = pki.ca.to_str().expect("a UTF-8 temp path");

    // Trusting the test CA: a Log is confirmed and the history returns it.
    let gateway = Gateway::start_at(TLS_URL, &["--amqp-ca", ca]).await;
    let mut client = gateway.client().await;
    let id = log_one(&mut client, "over TLS").await;
    let records = history(&mut client).await;
    assert!(
        records
            .iter()
            .any(|r| r.id == id && r.message == "over TLS"),
        "{records:?}"
    );
    drop(gateway);

    // With a client certificate the node's CA signed (verify_peer checks it).
    let identity = pki.client("gateway", "loggate-gateway");
    let (cert, key) = (
        identity.cert.to_str().expect("UTF-8"),
        identity.key.to_str().expect("UTF-8"),
    );
    let gateway = Gateway::start_at(
        TLS_URL,
        &[
            "--amqp-ca",
            ca,
            "--amqp-client-cert",
            cert,
            "--amqp-client-key",
            key,
        ],
    )
    .await;
    let mut client = gateway.client().await;
    log_one(&mut client, "with a client certificate").await;
    drop(gateway);

    // Another CA, or the system roots: the broker's certificate is not
    // trusted, and the error says so (exit 1, no panic, no password).
    let other = TestPki::new("some other CA");
    let url = TLS_URL.replace("guest:guest", &format!("guest:{SECRET}"));
    let other_ca = other.ca.to_str().expect("UTF-8");
    for extra in [&["--amqp-ca", other_ca][..], &[][..]] {
        let mut args = vec!["--amqp-url", &url];
        args.extend_from_slice(extra);
        let stderr = serve_fails(&args).await;
        assert!(
            stderr.contains("certificate was not trusted"),
            "{extra:?}: {stderr}"
        );
        assert!(stderr.contains("localhost:5791 (TLS)"), "{stderr}");
        assert!(!stderr.contains(SECRET), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }

    // A client certificate from a CA the node does not trust: refused.
    let stranger = other.client("stranger", "stranger");
    let stderr = serve_fails(&[
        "--amqp-url",
        &url,
        "--amqp-ca",
        ca,
        "--amqp-client-cert",
        stranger.cert.to_str().expect("UTF-8"),
        "--amqp-client-key",
        stranger.key.to_str().expect("UTF-8"),
    ])
    .await;
    assert!(
        stderr.contains("RabbitMQ refused the handshake"),
        "{stderr}"
    );
    assert!(!stderr.contains(SECRET), "{stderr}");
}

#[tokio::test]
async fn amqps_to_a_plaintext_listener_is_refused_not_downgraded() {
    let url = format!("amqps://guest:{SECRET}@127.0.0.1:5672/%2f");
    let stderr = serve_fails(&["--amqp-url", &url]).await;
    assert!(stderr.contains("did not answer with TLS"), "{stderr}");
    assert!(!stderr.contains(SECRET), "{stderr}");
}

#[tokio::test]
async fn tls_flags_with_an_amqp_url_are_refused_at_start() {
    let pki = TestPki::new("unused CA");
    let url = format!("amqp://guest:{SECRET}@127.0.0.1:5672/%2f");
    let stderr = serve_fails(&[
        "--amqp-url",
        &url,
        "--amqp-ca",
        pki.ca.to_str().expect("UTF-8"),
    ])
    .await;
    assert!(
        stderr.contains("--amqp-ca") && stderr.contains("amqp://"),
        "names both: {stderr}"
    );
    assert!(!stderr.contains(SECRET), "{stderr}");
}

#[tokio::test]
async fn a_malformed_url_is_refused_without_showing_the_password() {
    for url in [
        format!("amqp:guest:{SECRET}@127.0.0.1"),
        format!("amqp://guest:{SECRET}@127.0.0.1:port/%2f"),
        format!("amqp://guest:{SECRET}@[::1/%2f"),
    ] {
        let stderr = serve_fails(&["--amqp-url", &url]).await;
        assert!(stderr.contains("not an AMQP URL"), "{stderr}");
        assert!(!stderr.contains(SECRET), "{stderr}");
    }
}

#[tokio::test]
async fn a_wrong_password_is_refused_without_showing_it() {
    let url = format!("amqp://guest:{SECRET}@127.0.0.1:5672/%2f");
    let stderr = serve_fails(&["--amqp-url", &url]).await;
    assert!(stderr.contains("ACCESS_REFUSED"), "{stderr}");
    assert!(!stderr.contains(SECRET), "{stderr}");

    // The same from a URL file.
    let dir = tempdir("wrong-password");
    let file = dir.join("urls");
    std::fs::write(&file, format!("{url}\n")).expect("write the URL file");
    let stderr = serve_fails(&["--amqp-url-file", file.to_str().expect("UTF-8")]).await;
    assert!(stderr.contains("ACCESS_REFUSED"), "{stderr}");
    assert!(!stderr.contains(SECRET), "{stderr}");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn the_url_file_serves_with_no_url_on_the_command_line() {
    let dir = tempdir("url-file");
    let file = dir.join("urls");
    std::fs::write(&file, format!("# the default broker\n{AMQP_URL}\n")).expect("write");
    let log = dir.join("stderr");
    let (exchange, history_queue, _names) = fresh_names();
    let mut command = Command::new(loggate_bin());
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--amqp-url-file"])
        .arg(&file)
        .args(["--exchange", &exchange, "--history-queue", &history_queue])
        .env_remove("LOGGATE_AMQP_URL")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("stderr file"));
    let (mut child, address) = spawn_serving(command, WAIT).await.expect("serves");

    let pid = child.id().expect("running");
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline");
    assert!(
        !String::from_utf8_lossy(&cmdline).contains("amqp://"),
        "no URL in ps"
    );

    let mut client = pb::log_gateway_client::LogGatewayClient::connect(format!("http://{address}"))
        .await
        .expect("connect");
    let id = log_one(&mut client, "via the URL file").await;
    assert!(history(&mut client).await.iter().any(|r| r.id == id));

    child.kill().await.expect("kill");
    let stderr = std::fs::read_to_string(&log).expect("stderr");
    assert!(stderr.contains("connected to RabbitMQ"), "{stderr}");
    assert!(!stderr.contains("guest:guest"), "{stderr}");

    // Both a file and a URL: a usage error (clap's exit 2) that names the
    // flags, not their values.
    let both = Command::new(loggate_bin())
        .args(["serve", "--amqp-url-file"])
        .arg(&file)
        .args([
            "--amqp-url",
            &format!("amqp://guest:{SECRET}@127.0.0.1:5672/%2f"),
        ])
        .env_remove("LOGGATE_AMQP_URL")
        .stdin(Stdio::null())
        .output()
        .await
        .expect("loggate runs");
    let stderr = String::from_utf8_lossy(&both.stderr);
    assert_eq!(both.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--amqp-url-file"), "{stderr}");
    assert!(!stderr.contains(SECRET), "{stderr}");
    let _ = std::fs::remove_dir_all(dir);
}

/// A fresh directory for one test's files.
fn tempdir(what: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(loggate_testkit::unique(what));
    std::fs::create_dir_all(&dir).expect("create a temp dir");
    dir
}
