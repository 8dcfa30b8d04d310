//! `--http-listen`, from the outside: an in-process gateway per test, records
//! logged over gRPC, and the page's API read with a plain HTTP/1.1 client
//! (hyper's), its Server-Sent Events parsed here by hand, strictly, so that a
//! framing mistake fails a test rather than being smoothed over by a
//! forgiving client. (How the page shows what it reads is the browser
//! tests' part: tests/browser.)

use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt as _;
use hyper::{body::Incoming, client::conn::http1, Request, StatusCode};
use hyper_util::rt::TokioIo;
use loggate::proto::v1 as pb;
use loggate_testkit::{bearer, principal, record, unique, AuthFile, Gateway, WAIT};
use tokio::net::TcpStream;

/// A free loopback address for `--http-listen`: bound, read, released.
fn free_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("bound address").to_string()
}

/// A gateway serving the web page, with `extra` flags; and the page's address.
async fn gateway(extra: &[&str]) -> (Gateway, String) {
    let web = free_address();
    let mut flags = vec!["--http-listen", web.as_str()];
    flags.extend_from_slice(extra);
    (Gateway::start(&flags).await, web)
}

/// An answer's status, head and body (the body left unread).
struct Answer {
    status: StatusCode,
    headers: hyper::HeaderMap,
    body: Incoming,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .map_or("", |value| value.to_str().expect("ASCII header"))
    }

    /// The whole body, for answers that end.
    async fn text(self) -> String {
        let bytes = tokio::time::timeout(WAIT, self.body.collect())
            .await
            .expect("the body in time")
            .expect("a body")
            .to_bytes();
        String::from_utf8(bytes.to_vec()).expect("UTF-8")
    }

    async fn json(self) -> serde_json::Value {
        let text = self.text().await;
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    }

    fn events(self) -> Events {
        assert_eq!(self.status, StatusCode::OK);
        assert_eq!(self.header("content-type"), "text/event-stream");
        Events {
            body: self.body,
            buffer: String::new(),
        }
    }
}

/// GET `path` with `headers`, on a connection of its own.
async fn get(address: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
    let stream = TcpStream::connect(address).await.expect("connect");
    let (mut sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP/1.1");
    tokio::spawn(connection);
    let mut request = Request::get(path);
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("host"))
    {
        request = request.header("host", address);
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(http_body_util::Empty::<Bytes>::new())
        .expect("request");
    let response = tokio::time::timeout(WAIT, sender.send_request(request))
        .await
        .expect("an answer in time")
        .expect("an answer");
    let (head, body) = response.into_parts();
    Answer {
        status: head.status,
        headers: head.headers,
        body,
    }
}

/// One Server-Sent Event (comments are kept apart, as `comment`).
#[derive(Debug, Default, Clone, PartialEq)]
struct Event {
    id: Option<String>,
    event: Option<String>,
    data: Option<String>,
    retry: Option<String>,
    comments: Vec<String>,
}

impl Event {
    fn record(&self) -> serde_json::Value {
        assert_eq!(self.event, None, "a record is an unnamed event: {self:?}");
        serde_json::from_str(self.data.as_deref().expect("data")).expect("JSON data")
    }

    fn message(&self) -> String {
        self.record()["message"]
            .as_str()
            .expect("a message")
            .to_owned()
    }
}

/// An event stream being read.
struct Events {
    body: Incoming,
    buffer: String,
}

impl Events {
    /// The next event, comments included; `None` when the stream ended.
    async fn next(&mut self) -> Option<Event> {
        self.next_within(WAIT).await
    }

    /// [`Events::next`], waiting up to `wait` for each piece of it.
    async fn next_within(&mut self, wait: Duration) -> Option<Event> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                return Some(parse_event(&block[..end]));
            }
            let frame = tokio::time::timeout(wait, self.body.frame())
                .await
                .expect("an event in time");
            match frame {
                None => {
                    assert!(self.buffer.is_empty(), "a partial event: {:?}", self.buffer);
                    return None;
                }
                Some(frame) => {
                    let frame = frame.expect("a body frame");
                    if let Ok(data) = frame.into_data() {
                        self.buffer
                            .push_str(std::str::from_utf8(&data).expect("UTF-8"));
                    }
                }
            }
        }
    }

    /// The next event that is not only comments (heartbeats, the preamble).
    async fn next_event(&mut self) -> Event {
        loop {
            let event = self.next().await.expect("the stream goes on");
            if event.data.is_some() {
                return event;
            }
        }
    }

    /// The next `n` records' messages, failing on any other named event.
    async fn messages(&mut self, n: usize) -> Vec<String> {
        let mut messages = Vec::new();
        while messages.len() < n {
            messages.push(self.next_event().await.message());
        }
        messages
    }
}

/// Parses one event block strictly: every line is a comment or a known field.
fn parse_event(block: &str) -> Event {
    let mut event = Event::default();
    for line in block.split('\n') {
        assert!(!line.contains('\r'), "a stray CR: {line:?}");
        if let Some(comment) = line.strip_prefix(':') {
            event.comments.push(comment.trim().to_owned());
            continue;
        }
        let (field, value) = line
            .split_once(": ")
            .unwrap_or_else(|| panic!("not `field: value`: {line:?}"));
        let slot = match field {
            "id" => &mut event.id,
            "event" => &mut event.event,
            "data" => &mut event.data,
            "retry" => &mut event.retry,
            other => panic!("unknown field {other:?}"),
        };
        assert!(slot.is_none(), "{field} twice in one event: {block:?}");
        *slot = Some(value.to_owned());
    }
    event
}

/// Opens a tail and reads its preamble (the stream is open: records logged
/// from now on are in it).
async fn open(address: &str, query: &str, headers: &[(&str, &str)]) -> Events {
    let mut events = get(address, &format!("/api/tail?{query}"), headers)
        .await
        .events();
    let preamble = events.next().await.expect("a preamble");
    assert_eq!(preamble.retry.as_deref(), Some("1000"));
    events
}

async fn log(gateway: &Gateway, records: impl IntoIterator<Item = pb::LogRecord>) {
    let mut client = gateway.client().await;
    for record in records {
        client
            .log(pb::LogRequest {
                record: Some(record),
            })
            .await
            .expect("logged");
    }
}

fn with(record: pb::LogRecord, edit: impl FnOnce(&mut pb::LogRecord)) -> pb::LogRecord {
    let mut record = record;
    edit(&mut record);
    record
}

/// The live hub attaches when the tail opens, so a record logged right after
/// reaches it; and each test's service name is its own.
fn service() -> String {
    unique("web").replace('.', "-")
}

#[tokio::test]
async fn the_page_and_its_assets_are_served_with_a_strict_policy() {
    let (_gateway, web) = gateway(&[]).await;
    let page = get(&web, "/", &[]).await;
    assert_eq!(page.status, StatusCode::OK);
    assert_eq!(page.header("content-type"), "text/html; charset=utf-8");
    let policy = page.header("content-security-policy").to_owned();
    assert!(policy.contains("script-src 'self'"), "{policy}");
    assert!(!policy.contains("unsafe"), "{policy}");
    assert!(policy.contains("default-src 'none'"), "{policy}");
    let html = page.text().await;
    assert!(html.contains(r#"<script src="/app.js" defer></script>"#));
    assert!(!html.contains("<script>"), "no inline script");
    for (path, kind) in [
        ("/app.js", "text/javascript"),
        ("/app.css", "text/css"),
        ("/favicon.svg", "image/svg+xml"),
    ] {
        let answer = get(&web, path, &[]).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}");
        assert!(answer.header("content-type").starts_with(kind), "{path}");
        assert_eq!(answer.header("x-content-type-options"), "nosniff");
    }
    assert_eq!(get(&web, "/nope", &[]).await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_tail_is_server_sent_events_each_record_its_json_body_with_its_token_as_id() {
    let (gateway, web) = gateway(&[]).await;
    let service = service();
    let mut events = open(&web, &format!("service={service}"), &[]).await;
    log(
        &gateway,
        (0..3).map(|i| {
            with(record(&service, &format!("m{i}")), |r| {
                r.level = pb::Level::Warn as i32;
                r.node = "pod-1".into();
                r.attributes.insert("order".into(), i.to_string());
            })
        }),
    )
    .await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let event = events.next_event().await;
        let body = event.record();
        assert_eq!(body["service"], service.as_str());
        assert_eq!(body["message"], format!("m{i}"));
        assert_eq!(body["level"], "warn", "the AMQP body's level word");
        assert_eq!(body["node"], "pod-1");
        assert_eq!(body["attributes"]["order"], i.to_string());
        assert_eq!(body["gateway"], gateway.instance.as_str());
        assert!(body["received_time"].is_string());
        let id = event.id.expect("a resume token as id");
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()), "{id}");
        ids.push(id);
    }
    ids.dedup();
    assert_eq!(ids.len(), 3, "every record has its own token");
}

#[tokio::test]
async fn filters_let_through_exactly_the_matching_records() {
    let (gateway, web) = gateway(&[]).await;
    let (a, b) = (service(), service());
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let mut events = open(
        &web,
        &format!("service={a}&service={b}&level=warn&node=pod-1&attr=region:eu&contains=card&trace_id={trace}"),
        &[],
    )
    .await;
    let matching = |service: &str, message: &str| {
        with(record(service, message), |r| {
            r.level = pb::Level::Error as i32;
            r.node = "pod-1".into();
            r.attributes.insert("region".into(), "eu".into());
            r.trace_id = trace.into();
        })
    };
    log(
        &gateway,
        [
            matching(&a, "card 1"),
            with(matching(&a, "card: info"), |r| {
                r.level = pb::Level::Info as i32
            }),
            with(matching(&a, "card: other node"), |r| {
                r.node = "pod-2".into()
            }),
            with(matching(&a, "card: other region"), |r| {
                r.attributes.insert("region".into(), "us".into());
            }),
            with(matching(&a, "card: no trace"), |r| r.trace_id.clear()),
            matching(&a, "no such word"),
            matching(&service(), "card: other service"),
            matching(&b, "card 2"),
            with(matching(&a, "card 3"), |r| {
                r.level = pb::Level::Fatal as i32
            }),
        ],
    )
    .await;
    assert_eq!(events.messages(3).await, ["card 1", "card 2", "card 3"]);
}

#[tokio::test]
async fn last_event_id_resumes_after_the_last_record_seen_with_no_gap_and_no_duplicate() {
    let (gateway, web) = gateway(&[]).await;
    let service = service();
    log(&gateway, (0..5).map(|i| record(&service, &format!("m{i}")))).await;
    // A browser opens `since`, reads two records, loses the connection...
    let query = format!("service={service}&since=1h");
    let mut first = open(&web, &query, &[]).await;
    assert_eq!(first.messages(1).await, ["m0"]);
    let second = first.next_event().await;
    assert_eq!(second.message(), "m1");
    drop(first);
    log(&gateway, (5..8).map(|i| record(&service, &format!("m{i}")))).await;
    // ...and reconnects to the same URL with the last id it saw.
    let id = second.id.expect("an id");
    let mut resumed = open(&web, &query, &[("last-event-id", &id)]).await;
    assert_eq!(
        resumed.messages(6).await,
        ["m2", "m3", "m4", "m5", "m6", "m7"]
    );
    // The `resume` parameter does the same for clients that cannot set it.
    let mut by_parameter = open(&web, &format!("{query}&resume={id}"), &[]).await;
    assert_eq!(by_parameter.messages(1).await, ["m2"]);
}

#[tokio::test]
async fn a_tail_from_the_past_says_caught_up_as_a_named_event() {
    let (gateway, web) = gateway(&[]).await;
    let service = service();
    log(&gateway, (0..2).map(|i| record(&service, &format!("m{i}")))).await;
    let mut events = open(&web, &format!("service={service}&from_beginning=true"), &[]).await;
    assert_eq!(events.messages(2).await, ["m0", "m1"]);
    let caught_up = events.next_event().await;
    assert_eq!(caught_up.event.as_deref(), Some("caught_up"));
    assert_eq!(caught_up.id, None, "no token: the last record's stands");
    // history_only ends the stream once caught up.
    let mut history = open(
        &web,
        &format!("service={service}&from_beginning=1&history_only=true"),
        &[],
    )
    .await;
    assert_eq!(history.messages(2).await, ["m0", "m1"]);
    assert_eq!(
        history.next_event().await.event.as_deref(),
        Some("caught_up")
    );
    assert_eq!(history.next().await, None, "the stream ends");
}

#[tokio::test]
async fn a_resume_token_whose_records_are_gone_gets_a_gap_event_first() {
    // As in tests/history.rs: small segments and a small cap make RabbitMQ
    // drop the oldest records after a few dozen.
    let (gateway, web) = gateway(&[
        "--history-max-bytes",
        "20000",
        "--history-segment-bytes",
        "4000",
    ])
    .await;
    let service = service();
    log(
        &gateway,
        (0..5).map(|i| record(&service, &format!("early{i}"))),
    )
    .await;
    let mut first = open(&web, "from_beginning=1", &[]).await;
    let token = first.next_event().await.id.expect("an id");
    drop(first);
    let mut batches = 0;
    loop {
        log(
            &gateway,
            (0..20).map(|i| record(&service, &format!("late{batches}.{i}"))),
        )
        .await;
        batches += 1;
        let mut oldest = open(&web, "from_beginning=1&limit=1", &[]).await;
        if !oldest.next_event().await.message().starts_with("early") {
            break;
        }
        assert!(batches < 25, "retention removed nothing");
    }
    let mut resumed = open(&web, "limit=1", &[("last-event-id", &token)]).await;
    let gap = resumed.next_event().await;
    assert_eq!(gap.event.as_deref(), Some("gap"), "{gap:?}");
    let reason: serde_json::Value =
        serde_json::from_str(gap.data.as_deref().expect("data")).expect("JSON");
    assert!(reason["reason"]
        .as_str()
        .expect("a reason")
        .contains("retention"));
    assert!(resumed.next_event().await.message().starts_with("late"));
}

#[tokio::test]
async fn bad_parameters_are_refused_with_400_naming_the_parameter() {
    let (_gateway, web) = gateway(&[]).await;
    for (query, message) in [
        (
            "level=loud",
            "level: \"loud\" is not a level: trace, debug, info, warn, error or fatal",
        ),
        ("servce=a", "\"servce\": unknown parameter; known: service"),
        (
            "since=5m&from_beginning=true",
            "from_beginning: cannot be combined with since",
        ),
        ("attr=region", "attr: \"region\" is not key:value"),
        (
            "service=check%20out",
            "service \"check out\": may only contain letters",
        ),
        ("since=soon", "since: \"soon\" is not a duration"),
        ("history_only=true", "history_only: needs a start"),
    ] {
        let answer = get(&web, &format!("/api/tail?{query}"), &[]).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{query}");
        let body = answer.json().await;
        assert_eq!(body["code"], "INVALID_ARGUMENT", "{query}");
        let error = body["error"].as_str().expect("a message");
        assert!(error.starts_with(message), "{query}: {error}");
    }
    let answer = get(&web, "/api/tail", &[("last-event-id", "not-hex")]).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(answer.json().await["error"]
        .as_str()
        .expect("a message")
        .starts_with("resume_token"));
}

#[tokio::test]
async fn with_auth_the_token_decides_and_a_scope_shows_only_its_services() {
    let (mine, other) = (format!("{}-app", service()), service());
    let auth = AuthFile::new(&format!(
        "{}{}",
        principal(
            "reader",
            "reader-token",
            "[]",
            &format!("[\"{}*\"]", &mine[..mine.len() - 4])
        ),
        principal("writer", "writer-token", "[\"*\"]", "[\"*\"]"),
    ));
    let (gateway, web) = gateway(&["--auth-file", auth.path()]).await;
    let reader = [("authorization", "Bearer reader-token")];

    let none = get(&web, "/api/tail", &[]).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert_eq!(none.header("www-authenticate"), "Bearer realm=\"loggate\"");
    assert_eq!(none.json().await["code"], "UNAUTHENTICATED");
    let unknown = get(&web, "/api/tail", &[("authorization", "Bearer nope")]).await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown.json().await["error"], "unknown token");

    let outside = get(&web, &format!("/api/tail?service={other}"), &reader).await;
    assert_eq!(outside.status, StatusCode::FORBIDDEN);
    let error = outside.json().await["error"]
        .as_str()
        .expect("a message")
        .to_owned();
    assert!(error.contains("may not read service"), "{error}");

    // The rates count every service: not for a token that reads only some.
    let stats = get(&web, "/api/stats", &reader).await;
    assert_eq!(stats.status, StatusCode::FORBIDDEN);
    let session = get(&web, "/api/session", &reader).await.json().await;
    assert_eq!(session["principal"], "reader");
    assert_eq!(session["tail_everything"], false);

    // Without a service filter the tail shows exactly the token's scope.
    let mut events = open(&web, "", &reader).await;
    let mut client = gateway.client().await;
    for (service, message) in [(&other, "not yours"), (&mine, "yours")] {
        client
            .log(bearer(
                "writer-token",
                pb::LogRequest {
                    record: Some(record(service, message)),
                },
            ))
            .await
            .expect("logged");
    }
    assert_eq!(events.messages(1).await, ["yours"]);
    let everything = get(
        &web,
        "/api/stats",
        &[("authorization", "Bearer writer-token")],
    )
    .await;
    assert_eq!(everything.status, StatusCode::OK);
}

#[tokio::test]
async fn the_page_counts_against_max_tails() {
    let (_gateway, web) = gateway(&["--max-tails", "1"]).await;
    let _open = open(&web, "", &[]).await;
    let refused = get(&web, "/api/tail", &[]).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    let body = refused.json().await;
    assert_eq!(body["code"], "RESOURCE_EXHAUSTED");
    assert!(body["error"]
        .as_str()
        .expect("message")
        .contains("--max-tails"));
}

#[tokio::test]
async fn stats_count_what_the_hub_reads_per_level_and_second() {
    let (gateway, web) = gateway(&[]).await;
    let service = service();
    // A live tail keeps the hub reading.
    let mut events = open(&web, &format!("service={service}"), &[]).await;
    log(
        &gateway,
        [
            (pb::Level::Warn, 3),
            (pb::Level::Error, 2),
            (pb::Level::Debug, 1),
        ]
        .into_iter()
        .flat_map(|(level, n)| {
            let service = service.clone();
            (0..n).map(move |i| {
                with(record(&service, &format!("{level:?}{i}")), |r| {
                    r.level = level as i32
                })
            })
        }),
    )
    .await;
    events.messages(6).await;
    // The second being counted is left out until it is over.
    let deadline = tokio::time::Instant::now() + WAIT;
    let totals = loop {
        let stats = get(&web, "/api/stats?seconds=30", &[]).await.json().await;
        assert_eq!(
            stats["levels"],
            serde_json::json!(["trace", "debug", "info", "warn", "error", "fatal"])
        );
        let counts = stats["counts"].as_array().expect("counts").clone();
        assert_eq!(counts.len(), 30);
        let mut totals = [0u64; 6];
        for second in &counts {
            for (total, count) in totals.iter_mut().zip(second.as_array().expect("a second")) {
                *total += count.as_u64().expect("a count");
            }
        }
        if totals.iter().sum::<u64>() == 6 || tokio::time::Instant::now() > deadline {
            break totals;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(totals, [0, 1, 0, 3, 2, 0]);
    let bad = get(&web, "/api/stats?seconds=0", &[]).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_message_that_looks_like_markup_is_served_as_json_data() {
    let (gateway, web) = gateway(&[]).await;
    let service = service();
    let mut events = open(&web, &format!("service={service}"), &[]).await;
    let xss = "<img src=x onerror=alert(1)></script><script>alert(2)</script>\n";
    log(&gateway, [record(&service, xss)]).await;
    let event = events.next_event().await;
    assert_eq!(event.message(), xss, "the characters, unchanged");
}

#[tokio::test]
async fn without_auth_a_host_name_other_than_localhost_is_refused() {
    // DNS rebinding: another site's name resolved to 127.0.0.1.
    let (_gateway, web) = gateway(&[]).await;
    for path in ["/", "/api/tail", "/api/stats"] {
        let answer = get(&web, path, &[("host", "evil.example:80")]).await;
        assert_eq!(answer.status, StatusCode::FORBIDDEN, "{path}");
    }
    let port = web.rsplit_once(':').expect("a port").1;
    let answer = get(&web, "/", &[("host", &format!("localhost:{port}"))]).await;
    assert_eq!(answer.status, StatusCode::OK);
}

#[tokio::test]
async fn the_metrics_routes_share_the_listener_when_given_the_same_address() {
    let web = free_address();
    let _gateway = Gateway::start(&["--http-listen", &web, "--metrics-listen", &web]).await;
    for path in ["/", "/metrics", "/readyz"] {
        assert_eq!(get(&web, path, &[]).await.status, StatusCode::OK, "{path}");
    }
}

#[tokio::test]
async fn with_tls_the_page_is_served_over_https_with_the_grpc_certificate() {
    use rustls_pki_types::{pem::PemObject as _, CertificateDer, ServerName};
    use tokio_rustls::{rustls, TlsConnector};

    let pki = loggate_testkit::TestPki::new("loggate web test CA");
    let server = pki.server("server");
    let web = free_address();
    let _gateway = Gateway::start_tls(
        &[
            "--http-listen",
            &web,
            "--tls-cert",
            server.cert.to_str().expect("UTF-8"),
            "--tls-key",
            server.key.to_str().expect("UTF-8"),
        ],
        &pki.ca_pem(),
        None,
    )
    .await;
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(&pki.ca_pem()) {
        roots.add(certificate.expect("PEM")).expect("a CA");
    }
    let mut config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    // What a browser offers: HTTP/2 first. The page answers in HTTP/1.1.
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(&web).await.expect("connect");
    let tls = TlsConnector::from(std::sync::Arc::new(config))
        .connect(ServerName::try_from("localhost").expect("a name"), tcp)
        .await
        .expect("a TLS handshake");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (mut sender, connection) = http1::handshake(TokioIo::new(tls)).await.expect("HTTP/1.1");
    tokio::spawn(connection);
    let request = Request::get("/")
        .header(
            "host",
            format!("localhost:{}", web.rsplit_once(':').expect("port").1),
        )
        .body(http_body_util::Empty::<Bytes>::new())
        .expect("request");
    let response = sender.send_request(request).await.expect("an answer");
    assert_eq!(response.status(), StatusCode::OK);
    // Plain HTTP on the same port gets nothing.
    let stream = TcpStream::connect(&web).await.expect("connect");
    let (mut sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .expect("HTTP/1.1");
    tokio::spawn(connection);
    let plain = Request::get("/")
        .header("host", &web)
        .body(http_body_util::Empty::<Bytes>::new())
        .expect("request");
    assert!(tokio::time::timeout(WAIT, sender.send_request(plain))
        .await
        .expect("refused in time")
        .is_err());
}

#[tokio::test]
async fn a_quiet_stream_gets_a_keep_alive_comment_whatever_the_heartbeat() {
    // The page takes 45 s of silence for a dead connection.
    let (_gateway, web) = gateway(&["--tail-heartbeat", "1h"]).await;
    let mut events = open(&web, "", &[]).await;
    let started = tokio::time::Instant::now();
    let quiet = events
        .next_within(Duration::from_secs(20))
        .await
        .expect("the stream goes on");
    assert_eq!(quiet.comments, ["keep-alive"]);
    assert_eq!(quiet.data, None);
    assert!(started.elapsed() < Duration::from_secs(20));
}
