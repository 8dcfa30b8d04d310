//! Only the right callers: bearer tokens and client certificates mapped to
//! principals whose scopes say which services they may write as and read,
//! TLS and mTLS on the gRPC port with real certificates, the caller stamped
//! on every record, and the auth file and certificates reloaded on SIGHUP.
//!
//! Long because each refusal code is checked on every RPC, over plaintext,
//! TLS and mTLS; the helpers at the top are shared by all of them.

use futures::StreamExt;
use loggate::proto::v1::{self as pb, log_gateway_client::LogGatewayClient, tail_request::Start};
use loggate_testkit::{
    bearer, fresh_names, next_record, principal, record, serve_process, serve_process_logged,
    AuthFile, CertFiles, Gateway, Probe, TestPki, WAIT,
};
use tonic::{
    transport::{Certificate, Channel, ClientTlsConfig, Identity},
    Code, Request,
};

fn log_request(record: pb::LogRecord) -> pb::LogRequest {
    pb::LogRequest {
        record: Some(record),
    }
}

const WRITER: &str = "writer-token";
const ADMIN: &str = "admin-token";

fn scoped_file() -> AuthFile {
    AuthFile::new(&format!(
        "{}{}{}",
        principal(
            "checkout-prod",
            WRITER,
            r#"["checkout", "checkout-*"]"#,
            r#"["checkout"]"#
        ),
        principal("platform", ADMIN, r#"["*"]"#, r#"["*"]"#),
        principal("nobody", "nobody-token", "[]", "[]"),
    ))
}

#[tokio::test]
async fn calls_without_a_known_token_are_unauthenticated() {
    let auth = scoped_file();
    let gateway = Gateway::start(&["--auth-file", auth.path()]).await;
    let mut client = gateway.client().await;

    let missing = client
        .log(log_request(record("checkout", "hi")))
        .await
        .expect_err("no token");
    assert_eq!(missing.code(), Code::Unauthenticated, "{missing:?}");
    let unknown = client
        .log(bearer("guess", log_request(record("checkout", "hi"))))
        .await
        .expect_err("unknown token");
    assert_eq!(unknown.code(), Code::Unauthenticated, "{unknown:?}");
    let malformed = client
        .log({
            let mut request = Request::new(log_request(record("checkout", "hi")));
            request
                .metadata_mut()
                .insert("authorization", "Basic d3JpdGVy".parse().expect("ascii"));
            request
        })
        .await
        .expect_err("not a bearer token");
    assert_eq!(malformed.code(), Code::Unauthenticated, "{malformed:?}");
    let tail = client
        .tail(pb::TailRequest::default())
        .await
        .expect_err("no token");
    assert_eq!(tail.code(), Code::Unauthenticated, "{tail:?}");

    // Health and reflection stay open: load balancers and grpcurl need them.
    assert_eq!(
        gateway.health_status("").await,
        loggate_testkit::SERVING,
        "health answers without a token"
    );
}

#[tokio::test]
async fn a_principal_writes_only_as_its_services_and_is_stamped_on_each_record() {
    let auth = scoped_file();
    let gateway = Gateway::start(&["--auth-file", auth.path()]).await;
    let mut probe = Probe::bind(&gateway.exchange, "#").await;
    let mut client = gateway.client().await;

    let mut forged = record("checkout-eu", "paid");
    forged.principal = "someone-else".into();
    client
        .log(bearer(WRITER, log_request(forged)))
        .await
        .expect("checkout-* is in the writer's scope");
    let delivery = probe.next().await;
    let body: serde_json::Value = serde_json::from_slice(&delivery.data).expect("JSON body");
    assert_eq!(
        body["principal"], "checkout-prod",
        "the client's value is ignored"
    );
    let header = delivery
        .properties
        .headers()
        .as_ref()
        .and_then(|headers| headers.inner().get("principal").cloned())
        .expect("a principal header");
    assert_eq!(
        header,
        lapin::types::AMQPValue::LongString("checkout-prod".into())
    );

    let denied = client
        .log(bearer(WRITER, log_request(record("payments", "x"))))
        .await
        .expect_err("payments is outside the scope");
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    assert!(denied.message().contains("payments"), "{denied:?}");

    let batch = client
        .log_batch(bearer(
            WRITER,
            pb::LogBatchRequest {
                records: vec![record("checkout", "ok"), record("payments", "not ok")],
            },
        ))
        .await
        .expect_err("a batch with one record outside the scope");
    assert_eq!(batch.code(), Code::PermissionDenied, "{batch:?}");
    assert!(batch.message().contains("records[1]"), "{batch:?}");
    assert!(batch.message().contains("payments"), "{batch:?}");

    // LogStream answers each request on its own: this one is refused whole.
    let requests = futures::stream::iter(vec![pb::LogStreamRequest {
        seq: 7,
        records: vec![record("checkout", "ok"), record("billing", "not ok")],
    }]);
    let mut answers = client
        .log_stream(bearer(WRITER, requests))
        .await
        .expect("the stream opens")
        .into_inner();
    let answer = tokio::time::timeout(WAIT, answers.next())
        .await
        .expect("answered in time")
        .expect("an answer")
        .expect("answered, not ended with an error");
    assert_eq!(answer.seq, 7);
    assert!(answer.ids.is_empty(), "{answer:?}");
    let error = answer.error.expect("the request is refused");
    assert_eq!(error.code, Code::PermissionDenied as i32, "{error:?}");
    assert!(error.message.contains("records[1]"), "{error:?}");
    assert!(error.message.contains("billing"), "{error:?}");

    // Nothing of the refused calls was published: the next message the
    // probe sees is the admin's marker, not a record of the batch or stream.
    client
        .log(bearer(ADMIN, log_request(record("marker", "after"))))
        .await
        .expect("admin may write anything");
    let next: serde_json::Value = probe.next_json().await;
    assert_eq!(
        next["service"], "marker",
        "refused records were published: {next}"
    );
    assert_eq!(next["principal"], "platform");
}

#[tokio::test]
async fn a_tail_sees_only_its_scope() {
    let auth = scoped_file();
    let gateway = Gateway::start(&["--auth-file", auth.path()]).await;
    let mut client = gateway.client().await;
    for (token, service) in [
        (WRITER, "checkout"),
        (WRITER, "checkout-eu"),
        (ADMIN, "billing"),
        (WRITER, "checkout"),
    ] {
        client
            .log(bearer(token, log_request(record(service, "m"))))
            .await
            .expect("in scope");
    }

    let refused = client
        .tail(bearer(
            WRITER,
            pb::TailRequest {
                services: vec!["billing".into()],
                ..Default::default()
            },
        ))
        .await
        .expect_err("billing is outside the writer's tail scope");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(refused.message().contains("billing"), "{refused:?}");

    let history = |token: &'static str| {
        let mut client = client.clone();
        async move {
            let mut stream = client
                .tail(bearer(
                    token,
                    pb::TailRequest {
                        start: Some(Start::FromBeginning(true)),
                        history_only: true,
                        ..Default::default()
                    },
                ))
                .await
                .expect("tail in scope")
                .into_inner();
            let mut services = Vec::new();
            while let Some(response) = tokio::time::timeout(WAIT, stream.next())
                .await
                .expect("history in time")
            {
                if let Some(pb::tail_response::Event::Record(record)) = response.expect("ok").event
                {
                    services.push((record.service, record.principal));
                }
            }
            services
        }
    };
    assert_eq!(
        history(WRITER).await,
        [
            ("checkout".to_owned(), "checkout-prod".to_owned()),
            ("checkout".to_owned(), "checkout-prod".to_owned())
        ],
        "a tail with no service filter follows exactly the services in scope"
    );
    assert_eq!(
        history(ADMIN).await.len(),
        4,
        "tail = [\"*\"] sees everything"
    );

    // A live tail with no service filter, fed by the hub, is held to the
    // same scope.
    let mut live = client
        .tail(bearer(WRITER, pb::TailRequest::default()))
        .await
        .expect("a live tail")
        .into_inner();
    // The hub serves a new live tail from the next record published after
    // it joined; give it a moment to join.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    for service in ["billing", "checkout"] {
        client
            .log(bearer(ADMIN, log_request(record(service, "live"))))
            .await
            .expect("admin writes anything");
    }
    let first = next_record(&mut live).await;
    assert_eq!(
        first.service, "checkout",
        "billing is outside the scope: {first:?}"
    );
    let nothing = client
        .clone()
        .tail(bearer(
            "nobody-token",
            pb::TailRequest {
                start: Some(Start::FromBeginning(true)),
                ..Default::default()
            },
        ))
        .await
        .expect_err("a principal whose tail scope is empty gets no tail");
    assert_eq!(nothing.code(), Code::PermissionDenied, "{nothing:?}");
    assert!(nothing.message().contains("nobody"), "{nothing:?}");
}

#[tokio::test]
async fn a_heartbeat_tells_a_scoped_tail_nothing_about_other_services() {
    let auth = scoped_file();
    let gateway = Gateway::start(&["--auth-file", auth.path(), "--tail-heartbeat", "100ms"]).await;
    let mut client = gateway.client().await;
    let mut writer = live_tail_as(&mut client, WRITER).await;
    let mut admin = live_tail_as(&mut client, ADMIN).await;
    // A tail from the past reads every message on a consumer of its own:
    // there the scope check is the only thing between it and billing's.
    let mut writer_history = client
        .tail(bearer(
            WRITER,
            pb::TailRequest {
                start: Some(Start::FromBeginning(true)),
                ..Default::default()
            },
        ))
        .await
        .expect("a tail from the beginning")
        .into_inner();
    // The hub serves a new live tail from the next record after it joined.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    client
        .log(bearer(ADMIN, log_request(record("billing", "secret"))))
        .await
        .expect("admin writes anything");
    // A beat sent a moment after the record was published.
    let after = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
        + 0.2;
    assert!(
        head_time_after(&mut admin, after).await.is_some(),
        "an unscoped caller sees the head"
    );
    assert_eq!(
        head_time_after(&mut writer, after).await,
        None,
        "billing is outside the writer's scope: its records must not show in head_time"
    );
    assert_eq!(
        head_time_after(&mut writer_history, after).await,
        None,
        "nor on a tail that reads the stream on its own consumer"
    );
}

async fn live_tail_as(
    client: &mut LogGatewayClient<Channel>,
    token: &str,
) -> tonic::Streaming<pb::TailResponse> {
    client
        .tail(bearer(token, pb::TailRequest::default()))
        .await
        .expect("a live tail")
        .into_inner()
}

/// The `head_time` of the first heartbeat sent after `after` (Unix seconds).
async fn head_time_after(
    stream: &mut tonic::Streaming<pb::TailResponse>,
    after: f64,
) -> Option<prost_types::Timestamp> {
    loop {
        let response = tokio::time::timeout(WAIT, stream.next())
            .await
            .expect("a beat in time")
            .expect("open")
            .expect("ok");
        if let Some(pb::tail_response::Event::Heartbeat(beat)) = response.event {
            let time = beat.time.as_ref().expect("a beat has a time");
            if time.seconds as f64 + f64::from(time.nanos) / 1e9 > after {
                return beat.head_time;
            }
        }
    }
}

/// A LogGateway client over TLS to 127.0.0.1:`port`, trusting `ca`.
async fn tls_client(
    address: std::net::SocketAddr,
    ca: &[u8],
    identity: Option<&CertFiles>,
) -> Result<LogGatewayClient<Channel>, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    if let Some(files) = identity {
        tls = tls.identity(Identity::from_pem(files.cert_pem(), files.key_pem()));
    }
    let channel = Channel::from_shared(format!("https://{address}"))
        .expect("url")
        .tls_config(tls)?
        .connect_timeout(WAIT)
        .connect()
        .await?;
    Ok(LogGatewayClient::new(channel))
}

#[tokio::test]
async fn tls_serves_tokens_and_refuses_plaintext() {
    let pki = TestPki::new("loggate test CA");
    let server = pki.server("server");
    let auth = scoped_file();
    let gateway = Gateway::start_tls(
        &[
            "--auth-file",
            auth.path(),
            "--tls-cert",
            server.cert.to_str().expect("utf-8"),
            "--tls-key",
            server.key.to_str().expect("utf-8"),
        ],
        &pki.ca_pem(),
        None,
    )
    .await;
    let mut client = tls_client(gateway.address, &pki.ca_pem(), None)
        .await
        .expect("TLS handshake with the test CA");
    let answer = client
        .log(bearer(WRITER, log_request(record("checkout", "over TLS"))))
        .await
        .expect("logged over TLS");
    assert!(!answer.into_inner().id.is_empty());

    let plaintext = LogGatewayClient::connect(format!("http://{}", gateway.address)).await;
    let refused = match plaintext {
        Err(_) => true,
        Ok(mut client) => client
            .log(bearer(WRITER, log_request(record("checkout", "clear"))))
            .await
            .is_err(),
    };
    assert!(refused, "a plaintext call must not be served");

    let other = TestPki::new("some other CA");
    assert!(
        tls_client(gateway.address, &other.ca_pem(), None)
            .await
            .is_err(),
        "a client that does not trust the server's CA fails the handshake"
    );
}

#[tokio::test]
async fn mtls_admits_only_certificates_of_the_client_ca_and_maps_them_to_principals() {
    let pki = TestPki::new("loggate test CA");
    let server = pki.server("server");
    let oncall = pki.client("oncall", "oncall.platform");
    let stranger = pki.client("stranger", "stranger.example");
    let rogue_pki = TestPki::new("rogue CA");
    let rogue = rogue_pki.client("rogue", "oncall.platform");
    let auth = AuthFile::new(
        "[[principal]]\nname = \"platform-oncall\"\ncert_subject_cn = \"oncall.platform\"\nlog = [\"ops\"]\ntail = [\"*\"]\n",
    );
    let gateway = Gateway::start_tls(
        &[
            "--auth-file",
            auth.path(),
            "--tls-cert",
            server.cert.to_str().expect("utf-8"),
            "--tls-key",
            server.key.to_str().expect("utf-8"),
            "--tls-client-ca",
            pki.ca.to_str().expect("utf-8"),
        ],
        &pki.ca_pem(),
        Some(&oncall),
    )
    .await;
    let mut probe = Probe::bind(&gateway.exchange, "#").await;

    let mut client = tls_client(gateway.address, &pki.ca_pem(), Some(&oncall))
        .await
        .expect("a certificate of the client CA is admitted");
    client
        .log(log_request(record("ops", "paged")))
        .await
        .expect("the certificate's principal may write as ops");
    assert_eq!(probe.next_json().await["principal"], "platform-oncall");
    let denied = client
        .log(log_request(record("checkout", "x")))
        .await
        .expect_err("outside the scope");
    assert_eq!(denied.code(), Code::PermissionDenied);

    let mut unknown = tls_client(gateway.address, &pki.ca_pem(), Some(&stranger))
        .await
        .expect("a trusted certificate completes the handshake");
    let status = unknown
        .log(log_request(record("ops", "x")))
        .await
        .expect_err("but names no principal");
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");

    for (what, identity) in [("untrusted", Some(&rogue)), ("missing", None)] {
        let refused = match tls_client(gateway.address, &pki.ca_pem(), identity).await {
            Err(_) => true,
            Ok(mut client) => client.log(log_request(record("ops", what))).await.is_err(),
        };
        assert!(refused, "a {what} client certificate must be refused");
    }
}

#[tokio::test]
async fn sighup_reloads_the_auth_file_keeps_connections_and_ends_revoked_tails() {
    let stays = principal("stays", "stays-token", "[]", r#"["svc"]"#);
    let auth = AuthFile::new(&format!(
        "{}{stays}",
        principal("first", "first-token", r#"["svc"]"#, r#"["svc"]"#)
    ));
    let (exchange, history, _names) = fresh_names();
    let (child, url, stderr) = serve_process_logged(&[
        "--auth-file",
        auth.path(),
        "--exchange",
        &exchange,
        "--history-queue",
        &history,
    ])
    .await;
    let pid = child.id().expect("running");
    let mut client = LogGatewayClient::connect(url.clone())
        .await
        .expect("connect");
    client
        .log(bearer("first-token", log_request(record("svc", "before"))))
        .await
        .expect("first token works");
    let live_tail = |token: &'static str| {
        let mut client = client.clone();
        async move {
            client
                .tail(bearer(
                    token,
                    pb::TailRequest {
                        services: vec!["svc".into()],
                        ..Default::default()
                    },
                ))
                .await
                .expect("tail")
                .into_inner()
        }
    };
    // Live tails opened before the reloads: one of a principal that stays,
    // one of a principal the second reload removes.
    let mut kept = live_tail("stays-token").await;
    let mut revoked = live_tail("first-token").await;

    let hup = || {
        std::process::Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .expect("kill runs")
    };

    // A broken file is refused and the old principals stay in force.
    auth.rewrite("[[principal]]\nname = \"broken\"\n");
    assert!(hup().success());
    loggate_testkit::eventually("the bad file is reported", || {
        stderr.head().contains("auth file not reloaded")
    })
    .await;
    client
        .log(bearer("first-token", log_request(record("svc", "still"))))
        .await
        .expect("a bad file keeps the old principals");

    auth.rewrite(&format!(
        "{}{stays}",
        principal("second", "second-token", r#"["svc"]"#, r#"["svc"]"#)
    ));
    assert!(hup().success());
    loggate_testkit::eventually_async("the revoked token is refused", || {
        let mut client = client.clone();
        async move {
            client
                .log(bearer(
                    "first-token",
                    log_request(record("svc", "revoked?")),
                ))
                .await
                .is_err_and(|status| status.code() == Code::Unauthenticated)
        }
    })
    .await;
    client
        .log(bearer("second-token", log_request(record("svc", "after"))))
        .await
        .expect("the new token works on the same connection");

    // The tail of the principal that stayed saw the records written across
    // both reloads (and any "revoked?" published before the reload took
    // effect): it was not cut.
    let mut messages = Vec::new();
    while messages.last().map(String::as_str) != Some("after") {
        messages.push(next_record(&mut kept).await.message);
    }
    assert_eq!(messages[0], "still", "{messages:?}");
    assert!(
        messages[1..messages.len() - 1]
            .iter()
            .all(|m| m == "revoked?"),
        "{messages:?}"
    );
    // The removed principal's tail ended with UNAUTHENTICATED at the reload,
    // after what it was allowed to see.
    let ended = loop {
        match tokio::time::timeout(WAIT, revoked.next())
            .await
            .expect("the revoked tail ends in time")
        {
            Some(Ok(_)) => continue,
            Some(Err(status)) => break status,
            None => panic!("the revoked tail ended without a status"),
        }
    };
    assert_eq!(ended.code(), Code::Unauthenticated, "{ended:?}");
    assert!(ended.message().contains("first"), "{ended:?}");
    drop(child);
}

#[tokio::test]
async fn a_non_loopback_listener_needs_an_auth_file_or_an_explicit_opt_out() {
    let refused = tokio::process::Command::new(loggate_testkit::loggate_bin())
        .args(["serve", "--listen", "0.0.0.0:0", "--broker-wait", "1s"])
        .env_remove("LOGGATE_AUTH_FILE")
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(WAIT, refused)
        .await
        .expect("serve refuses at once instead of serving")
        .expect("serve runs");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--auth-file"), "{stderr}");
    assert!(stderr.contains("--allow-unauthenticated"), "{stderr}");

    let (exchange, history, _names) = fresh_names();
    let (child, _url) = serve_process(&[
        "--listen",
        "0.0.0.0:0",
        "--allow-unauthenticated",
        "--exchange",
        &exchange,
        "--history-queue",
        &history,
    ])
    .await;
    drop(child);
}

/// Runs the `loggate` CLI; returns (exit code, stdout, stderr).
async fn cli(args: &[&str]) -> (Option<i32>, String, String) {
    let output = tokio::process::Command::new(loggate_testkit::loggate_bin())
        .args(args)
        .env_remove("LOGGATE_TOKEN")
        .env_remove("RUST_LOG")
        .output()
        .await
        .expect("the CLI runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn a_token_from_loggate_token_new_works_from_the_cli_over_tls() {
    let (code, printed, stderr) = cli(&[
        "token", "new", "--name", "cli-user", "--log", "cli-*", "--tail", "cli-*",
    ])
    .await;
    assert_eq!(code, Some(0), "{stderr}");
    let token = printed
        .lines()
        .filter_map(|line| line.strip_prefix("# "))
        .find(|line| line.starts_with("lgt_"))
        .expect("the token is printed")
        .to_owned();
    assert!(!printed.contains(&format!("token_sha256 = \"{token}\"")));
    let block: String = printed
        .lines()
        .filter(|line| !line.starts_with('#'))
        .map(|line| format!("{line}\n"))
        .collect();
    let auth = AuthFile::new(&block);

    let pki = TestPki::new("loggate test CA");
    let server = pki.server("server");
    let gateway = Gateway::start_tls(
        &[
            "--auth-file",
            auth.path(),
            "--tls-cert",
            server.cert.to_str().expect("utf-8"),
            "--tls-key",
            server.key.to_str().expect("utf-8"),
        ],
        &pki.ca_pem(),
        None,
    )
    .await;
    let url = gateway.url();
    let ca = pki.ca.to_str().expect("utf-8");

    let (code, _, stderr) = cli(&[
        "log",
        "--server",
        &url,
        "--tls-ca",
        ca,
        "--service",
        "cli-app",
        "no token",
    ])
    .await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("Unauthenticated"), "{stderr}");

    let (code, id, stderr) = cli(&[
        "log",
        "--server",
        &url,
        "--tls-ca",
        ca,
        "--token",
        &token,
        "--service",
        "cli-app",
        "signed in",
    ])
    .await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!id.trim().is_empty());

    let (code, _, stderr) = cli(&[
        "log",
        "--server",
        &url,
        "--tls-ca",
        ca,
        "--token",
        &token,
        "--service",
        "billing",
        "x",
    ])
    .await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("PermissionDenied"), "{stderr}");
    assert!(stderr.contains("billing"), "{stderr}");

    let (code, lines, stderr) = cli(&[
        "tail",
        "--server",
        &url,
        "--tls-ca",
        ca,
        "--token",
        &token,
        "--from-start",
        "--history-only",
    ])
    .await;
    assert_eq!(code, Some(0), "{stderr}");
    assert!(lines.contains("cli-app"), "{lines}");
    assert!(lines.contains("signed in"), "{lines}");
    assert!(lines.trim_end().ends_with("by=cli-user"), "{lines}");
}

#[tokio::test]
async fn sighup_reloads_the_certificate_for_new_connections_and_keeps_open_ones() {
    let first = TestPki::new("first CA");
    let second = TestPki::new("second CA");
    let served = first.server("served");
    let auth = AuthFile::new(&principal("svc", "svc-token", r#"["svc"]"#, "[]"));
    let (exchange, history, _names) = fresh_names();
    let (child, url, stderr) = serve_process_logged(&[
        "--auth-file",
        auth.path(),
        "--tls-cert",
        served.cert.to_str().expect("utf-8"),
        "--tls-key",
        served.key.to_str().expect("utf-8"),
        "--exchange",
        &exchange,
        "--history-queue",
        &history,
    ])
    .await;
    let address: std::net::SocketAddr = url
        .trim_start_matches("http://")
        .parse()
        .expect("an address");
    let mut before = tls_client(address, &first.ca_pem(), None)
        .await
        .expect("the first certificate is served");

    let pid = child.id().expect("running").to_string();
    let hup = || {
        assert!(std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .expect("kill runs")
            .success());
    };

    // A broken certificate file is refused; the one in force stays.
    let good_cert = std::fs::read(&served.cert).expect("read");
    std::fs::write(&served.cert, b"not a certificate").expect("break the file");
    hup();
    loggate_testkit::eventually("the bad certificate file is reported", || {
        stderr.head().contains("TLS files not reloaded")
    })
    .await;
    tls_client(address, &first.ca_pem(), None)
        .await
        .expect("a bad file keeps the certificate in force");
    std::fs::write(&served.cert, good_cert).expect("restore");

    // The operator's renewal: new files in place, then SIGHUP.
    let renewed = second.server("renewed");
    std::fs::copy(&renewed.cert, &served.cert).expect("replace the certificate");
    std::fs::copy(&renewed.key, &served.key).expect("replace the key");
    hup();
    loggate_testkit::eventually_async("new connections get the renewed certificate", || {
        let ca = second.ca_pem();
        async move { tls_client(address, &ca, None).await.is_ok() }
    })
    .await;
    assert!(
        tls_client(address, &first.ca_pem(), None).await.is_err(),
        "the old certificate is no longer served to new connections"
    );
    before
        .log(bearer(
            "svc-token",
            log_request(record("svc", "same connection")),
        ))
        .await
        .expect("a connection opened before the reload keeps working");
    drop(child);
}
