//! `--metrics-listen` and `--log-format json`, from the outside: a gateway
//! process of its own per test (the metrics are the process's, so the deltas
//! are exact), real gRPC calls, real HTTP requests on a plain TCP socket, and
//! a strict parser of the Prometheus text format (below: the crates that
//! parse it skip lines they do not understand, so they could not fail here).

use std::{collections::BTreeMap, time::Duration};

use loggate::proto::v1::{self as pb, log_gateway_client::LogGatewayClient};
use loggate_testkit::{
    close_connections, eventually_async, fresh_names, record, serve_process, serve_process_logged,
    slow_live_tail, unique, Vhost, WAIT,
};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
    process::Child,
};
use tonic::{transport::Channel, Code};
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};

/// A free loopback address for `--metrics-listen`: bound, read, released.
fn free_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("bound address").to_string()
}

/// A gateway process with `--metrics-listen` on a free port, with `args`,
/// once it is SERVING (the address file only says gRPC is bound, which
/// happens before the gateway connects). Returns it, its gRPC URL and its
/// metrics address.
async fn gateway(args: &[&str]) -> (Child, String, String) {
    let metrics = free_address();
    let mut all = vec!["--metrics-listen", metrics.as_str()];
    all.extend_from_slice(args);
    let (child, url) = serve_process(&all).await;
    // The metrics listener is bound after the address file is written.
    eventually_async("/readyz 200 once SERVING", || async {
        try_get(&metrics, "/readyz")
            .await
            .is_ok_and(|answer| answer.status == 200)
    })
    .await;
    (child, url, metrics)
}

async fn client(url: &str) -> LogGatewayClient<Channel> {
    LogGatewayClient::connect(url.to_owned())
        .await
        .expect("connect")
}

/// An HTTP answer: status, head, body.
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: String,
}

/// Sends `request` (raw bytes) on a new connection and reads until the
/// server closes it.
async fn roundtrip(address: &str, request: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut stream = TcpStream::connect(address).await?;
    stream.write_all(request).await?;
    let mut bytes = Vec::new();
    tokio::time::timeout(WAIT, stream.read_to_end(&mut bytes))
        .await
        .map_err(|_| std::io::Error::other("no answer in time"))??;
    Ok(bytes)
}

async fn get(address: &str, path: &str) -> Answer {
    try_get(address, path)
        .await
        .unwrap_or_else(|error| panic!("GET {path}: {error}"))
}

/// GET, where the listener may not be there yet.
async fn try_get(address: &str, path: &str) -> std::io::Result<Answer> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n");
    let bytes = roundtrip(address, request.as_bytes()).await?;
    let text = String::from_utf8(bytes).expect("UTF-8");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("a status line: {head}"));
    assert!(
        !head.to_ascii_lowercase().contains("chunked"),
        "a sized body: {head}"
    );
    Ok(Answer {
        status,
        head: head.to_owned(),
        body: body.to_owned(),
    })
}

/// GET /metrics, checked to be 200 in the text format and parsed strictly.
async fn scrape(address: &str) -> Scrape {
    let answer = get(address, "/metrics").await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(
        answer
            .head
            .to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{}",
        answer.head
    );
    Scrape::parse(&answer.body).unwrap_or_else(|error| panic!("{error}\n{}", answer.body))
}

/// `name{k="v",…}` with the labels sorted: how [`Scrape`] keys a series.
fn series(name: &str, labels: &[(&str, &str)]) -> String {
    let mut labels: Vec<_> = labels.to_vec();
    labels.sort();
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{name}{{{}}}", inner.join(","))
}

/// One scrape, parsed by the rules of the Prometheus text format 0.0.4, and
/// checked further: each family's TYPE comes before its samples and once;
/// each sample belongs to a declared family (`_bucket`, `_sum`, `_count` for
/// histograms); no series twice; a histogram's buckets are cumulative and
/// its `+Inf` bucket equals its count.
#[derive(Debug)]
struct Scrape {
    samples: BTreeMap<String, f64>,
}

impl Scrape {
    fn parse(text: &str) -> Result<Scrape, String> {
        let mut types: BTreeMap<String, String> = BTreeMap::new();
        let mut helped: Vec<String> = Vec::new();
        let mut samples = BTreeMap::new();
        let mut last_family: Option<String> = None;
        let mut closed: Vec<String> = Vec::new();
        if !text.ends_with('\n') {
            return Err("the text must end with a newline".into());
        }
        for (number, line) in text.lines().enumerate() {
            let at = |what: &str| format!("line {}: {what}: {line:?}", number + 1);
            if line.is_empty() {
                return Err(at("empty line"));
            }
            if let Some(comment) = line.strip_prefix('#') {
                let mut words = comment.trim_start().splitn(3, ' ');
                match (words.next(), words.next(), words.next()) {
                    (Some("TYPE"), Some(name), Some(kind)) => {
                        check_name(name).map_err(|e| at(&e))?;
                        if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind)
                        {
                            return Err(at("unknown type"));
                        }
                        if types.insert(name.to_owned(), kind.to_owned()).is_some() {
                            return Err(at("a second TYPE"));
                        }
                    }
                    (Some("HELP"), Some(name), _) => {
                        check_name(name).map_err(|e| at(&e))?;
                        if helped.contains(&name.to_owned()) {
                            return Err(at("a second HELP"));
                        }
                        helped.push(name.to_owned());
                    }
                    _ => {}
                }
                continue;
            }
            let (name, labels, value) = sample(line).map_err(|e| at(&e))?;
            let family = family_of(&name, &types).ok_or_else(|| at("no TYPE before it"))?;
            // A family's samples are together.
            if last_family.as_deref() != Some(family.as_str()) {
                if closed.contains(&family) {
                    return Err(at("its family's samples are not together"));
                }
                if let Some(previous) = last_family.replace(family.clone()) {
                    closed.push(previous);
                }
            }
            if types[&family] == "histogram"
                && name.ends_with("_bucket")
                && !labels.iter().any(|(k, _)| k == "le")
            {
                return Err(at("a bucket without le"));
            }
            let key = series(
                &name,
                &labels
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect::<Vec<_>>(),
            );
            if samples.insert(key, value).is_some() {
                return Err(at("the same series twice"));
            }
        }
        let scrape = Scrape { samples };
        scrape.check_histograms(&types)?;
        Ok(scrape)
    }

    /// Buckets cumulative by `le`, `+Inf` present and equal to `_count`.
    fn check_histograms(&self, types: &BTreeMap<String, String>) -> Result<(), String> {
        for (family, _) in types.iter().filter(|(_, kind)| *kind == "histogram") {
            let prefix = format!("{family}_bucket{{");
            // Buckets grouped by their other labels.
            let mut groups: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
            for (key, value) in self.samples.range(prefix.clone()..) {
                let Some(labels) = key.strip_prefix(&prefix) else {
                    break;
                };
                let labels = labels.trim_end_matches('}');
                let mut le = None;
                let mut others = Vec::new();
                for pair in labels.split(',') {
                    match pair.strip_prefix("le=\"") {
                        Some(bound) => le = Some(parse_value(bound.trim_end_matches('"'))?),
                        None => others.push(pair),
                    }
                }
                let le = le.ok_or_else(|| format!("{key}: no le"))?;
                groups
                    .entry(others.join(","))
                    .or_default()
                    .push((le, *value));
            }
            for (others, mut buckets) in groups {
                buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
                if buckets.windows(2).any(|w| w[1].1 < w[0].1) {
                    return Err(format!("{family}{{{others}}}: buckets not cumulative"));
                }
                let (last_le, last) = *buckets.last().expect("at least one");
                if last_le != f64::INFINITY {
                    return Err(format!("{family}{{{others}}}: no +Inf bucket"));
                }
                let count_key = format!("{family}_count{{{others}}}");
                if self.samples.get(&count_key) != Some(&last) {
                    return Err(format!("{count_key} is not the +Inf bucket ({last})"));
                }
            }
        }
        Ok(())
    }

    /// A series' value (0 if absent: a labelled series appears with its first event).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.samples
            .get(&series(name, labels))
            .copied()
            .unwrap_or(0.0)
    }

    fn has(&self, name: &str, labels: &[(&str, &str)]) -> bool {
        self.samples.contains_key(&series(name, labels))
    }
}

fn check_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':');
    if first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
        Ok(())
    } else {
        Err(format!("invalid metric name {name:?}"))
    }
}

fn parse_value(text: &str) -> Result<f64, String> {
    match text {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => text
            .parse::<f64>()
            .ok()
            .filter(|_| !text.starts_with('+') && !text.contains("inf") && !text.contains("nan"))
            .ok_or_else(|| format!("invalid value {text:?}")),
    }
}

/// A sample line's name, labels and value.
type Sample = (String, Vec<(String, String)>, f64);

/// `name{labels} value [timestamp]`.
fn sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("no value")?;
    let name = &line[..name_end];
    check_name(name)?;
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after) = rest.strip_prefix('{') {
        let mut chars = after.char_indices().peekable();
        let end = loop {
            // A label name, `=`, a quoted value with \\ \" \n escapes.
            let Some(&(start, c)) = chars.peek() else {
                return Err("unterminated labels".into());
            };
            if c == '}' {
                break start;
            }
            let eq = after[start..].find('=').ok_or("a label without =")? + start;
            let label = &after[start..eq];
            check_name(label).map_err(|_| format!("invalid label name {label:?}"))?;
            if label.contains(':') || labels.iter().any(|(k, _)| k == label) {
                return Err(format!("label {label:?} invalid or repeated"));
            }
            while chars.peek().is_some_and(|&(i, _)| i <= eq) {
                chars.next();
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Err("a label value must be quoted".into());
            }
            let mut value = String::new();
            loop {
                match chars.next() {
                    Some((_, '\\')) => match chars.next() {
                        Some((_, '\\')) => value.push('\\'),
                        Some((_, '"')) => value.push('"'),
                        Some((_, 'n')) => value.push('\n'),
                        _ => return Err("an invalid escape".into()),
                    },
                    Some((_, '"')) => break,
                    Some((_, '\n')) | None => return Err("unterminated label value".into()),
                    Some((_, c)) => value.push(c),
                }
            }
            labels.push((label.to_owned(), value));
            match chars.peek() {
                Some(&(_, ',')) => {
                    chars.next();
                }
                Some(&(_, '}')) => {}
                _ => return Err("labels must be separated by ,".into()),
            }
        };
        rest = &after[end + 1..];
    }
    let rest = rest.strip_prefix(' ').ok_or("one space before the value")?;
    let mut fields = rest.split(' ');
    let value = parse_value(fields.next().ok_or("no value")?)?;
    if let Some(timestamp) = fields.next() {
        timestamp
            .parse::<i64>()
            .map_err(|_| format!("invalid timestamp {timestamp:?}"))?;
    }
    if fields.next().is_some() {
        return Err("text after the timestamp".into());
    }
    Ok((name.to_owned(), labels, value))
}

/// The declared family a sample belongs to.
fn family_of(name: &str, types: &BTreeMap<String, String>) -> Option<String> {
    if types.contains_key(name) {
        return Some(name.to_owned());
    }
    ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
        let family = name.strip_suffix(suffix)?;
        matches!(
            types.get(family).map(String::as_str),
            Some("histogram" | "summary")
        )
        .then(|| family.to_owned())
    })
}

const RECORDS: &str = "loggate_records_total";

fn taken(rpc: &str) -> [(&str, &str); 3] {
    [("rpc", rpc), ("outcome", "published"), ("code", "OK")]
}

#[tokio::test]
async fn records_are_counted_by_rpc_and_outcome_exactly() {
    let (exchange, history, _names) = fresh_names();
    let (_gateway, url, metrics) =
        gateway(&["--exchange", &exchange, "--history-queue", &history]).await;
    let mut client = client(&url).await;
    let before = scrape(&metrics).await;
    assert_eq!(
        before.value("loggate_broker_connected", &[("connection", "publish")]),
        1.0
    );
    assert_eq!(
        before.value("loggate_broker_connected", &[("connection", "tail")]),
        1.0
    );

    // Taken: 25 by LogBatch, 1 by Log, 4 by a LogStream request.
    let batch = (0..25)
        .map(|i| record("metrics", &format!("b{i}")))
        .collect();
    let answer = client
        .log_batch(pb::LogBatchRequest { records: batch })
        .await
        .expect("batch taken")
        .into_inner();
    assert!(!answer.spooled);
    client
        .log(pb::LogRequest {
            record: Some(record("metrics", "one")),
        })
        .await
        .expect("log taken");
    // Refused: a batch of 3 with one bad record (INVALID_ARGUMENT, all 3),
    // and a LogStream request of 2 with one.
    let mut bad: Vec<pb::LogRecord> = (0..3)
        .map(|i| record("metrics", &format!("x{i}")))
        .collect();
    bad[1].service = "bad service".into();
    let status = client
        .log_batch(pb::LogBatchRequest {
            records: bad.clone(),
        })
        .await
        .expect_err("refused");
    assert_eq!(status.code(), Code::InvalidArgument);
    let requests = vec![
        pb::LogStreamRequest {
            seq: 1,
            records: (0..4)
                .map(|i| record("metrics", &format!("s{i}")))
                .collect(),
        },
        pb::LogStreamRequest {
            seq: 2,
            records: bad[..2].to_vec(),
        },
    ];
    let mut answers = client
        .log_stream(tokio_stream::iter(requests))
        .await
        .expect("stream opens")
        .into_inner();
    let mut seen = Vec::new();
    while let Some(answer) = answers.message().await.expect("answers") {
        seen.push((answer.seq, answer.error.map(|e| e.code)));
    }
    seen.sort();
    assert_eq!(
        seen,
        [(1, None), (2, Some(Code::InvalidArgument as i32))],
        "one taken, one refused"
    );

    let after = scrape(&metrics).await;
    let delta = |name: &str, labels: &[(&str, &str)]| {
        after.value(name, labels) - before.value(name, labels)
    };
    assert_eq!(delta(RECORDS, &taken("LogBatch")), 25.0);
    assert_eq!(delta(RECORDS, &taken("Log")), 1.0);
    assert_eq!(delta(RECORDS, &taken("LogStream")), 4.0);
    let refused = |rpc| {
        [
            ("rpc", rpc),
            ("outcome", "refused"),
            ("code", "INVALID_ARGUMENT"),
        ]
    };
    assert_eq!(delta(RECORDS, &refused("LogBatch")), 3.0);
    assert_eq!(delta(RECORDS, &refused("LogStream")), 2.0);
    assert_eq!(delta(RECORDS, &refused("Log")), 0.0);
    for rpc in ["Log", "LogBatch", "LogStream"] {
        let spooled = [("rpc", rpc), ("outcome", "spooled"), ("code", "OK")];
        assert!(after.has(RECORDS, &spooled), "{rpc}: made up front");
        assert_eq!(delta(RECORDS, &spooled), 0.0, "no spool");
    }
    // Every series of the family, summed: nothing counted anywhere else.
    let total = |scrape: &Scrape| -> f64 {
        scrape
            .samples
            .iter()
            .filter(|(key, _)| key.starts_with("loggate_records_total{"))
            .map(|(_, value)| value)
            .sum()
    };
    assert_eq!(total(&after) - total(&before), 25.0 + 1.0 + 4.0 + 3.0 + 2.0);

    // Request sizes: LogBatch 25 and 3; LogStream 4 and 2; Log 1.
    let batch_sizes = "loggate_batch_records";
    assert_eq!(
        delta("loggate_batch_records_count", &[("rpc", "LogBatch")]),
        2.0
    );
    assert_eq!(
        delta("loggate_batch_records_sum", &[("rpc", "LogBatch")]),
        28.0
    );
    assert_eq!(
        delta(
            &format!("{batch_sizes}_bucket"),
            &[("rpc", "LogBatch"), ("le", "20")]
        ),
        1.0,
        "3 ≤ 20 < 25"
    );
    assert_eq!(
        delta("loggate_batch_records_sum", &[("rpc", "LogStream")]),
        6.0
    );
    assert_eq!(delta("loggate_batch_records_sum", &[("rpc", "Log")]), 1.0);
    // One confirmed publish per taken call or request: LogBatch, Log, LogStream.
    assert_eq!(delta("loggate_publish_confirm_seconds_count", &[]), 3.0);
    assert!(delta("loggate_publish_confirm_seconds_sum", &[]) > 0.0);
    assert_eq!(after.value("loggate_publish_inflight_records", &[]), 0.0);
    assert_eq!(after.value("loggate_otlp_records_rejected_total", &[]), 0.0);
    assert!(after.has("loggate_otlp_records_rejected_total", &[]));
}

#[tokio::test]
async fn tails_are_counted_by_kind_while_they_are_open() {
    let (exchange, history, _names) = fresh_names();
    let (_gateway, url, metrics) =
        gateway(&["--exchange", &exchange, "--history-queue", &history]).await;
    let mut client = client(&url).await;
    let tails = |scrape: &Scrape| {
        (
            scrape.value("loggate_tails_active", &[("kind", "hub")]),
            scrape.value("loggate_tails_active", &[("kind", "own")]),
        )
    };
    assert_eq!(tails(&scrape(&metrics).await), (0.0, 0.0));
    let live = client
        .tail(pb::TailRequest::default())
        .await
        .expect("live tail")
        .into_inner();
    let replay = client
        .tail(pb::TailRequest {
            start: Some(pb::tail_request::Start::FromBeginning(true)),
            ..Default::default()
        })
        .await
        .expect("replay tail")
        .into_inner();
    eventually_async("one tail of each kind", || async {
        tails(&scrape(&metrics).await) == (1.0, 1.0)
    })
    .await;
    drop((live, replay));
    eventually_async("no tail once they are gone", || async {
        tails(&scrape(&metrics).await) == (0.0, 0.0)
    })
    .await;
}

async fn serving(url: &str) -> bool {
    let Ok(channel) = Channel::from_shared(url.to_owned())
        .expect("a URL")
        .connect()
        .await
    else {
        return false;
    };
    let mut health = HealthClient::new(channel);
    health
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .is_ok_and(|answer| answer.into_inner().status == ServingStatus::Serving as i32)
}

#[tokio::test]
async fn readyz_follows_grpc_health_and_healthz_stays_up() {
    let vhost = Vhost::create();
    let instance = unique("gw");
    // In the test's vhost: deleted with it.
    let (exchange, history) = (unique("x"), unique("history"));
    let (_gateway, url, metrics) = gateway(&[
        "--amqp-url",
        &vhost.url(),
        "--exchange",
        &exchange,
        "--history-queue",
        &history,
        "--instance",
        &instance,
    ])
    .await;
    assert!(serving(&url).await);
    let before = scrape(&metrics).await;

    // Lock the gateway out and cut its connections: health goes NOT_SERVING.
    vhost.revoke();
    assert_eq!(close_connections(&instance), 2, "publish and tail");
    eventually_async("/readyz 503", || async {
        get(&metrics, "/readyz").await.status == 503
    })
    .await;
    eventually_async("gRPC health NOT_SERVING too", || async {
        !serving(&url).await
    })
    .await;
    let down = get(&metrics, "/healthz").await;
    assert_eq!(down.status, 200, "the process runs: {down:?}");
    let scraped = scrape(&metrics).await;
    for connection in ["publish", "tail"] {
        assert_eq!(
            scraped.value("loggate_broker_connected", &[("connection", connection)]),
            0.0,
            "{connection}"
        );
    }

    // Let it back in: it reconnects, and both say so.
    vhost.grant();
    eventually_async("/readyz 200 again", || async {
        get(&metrics, "/readyz").await.status == 200
    })
    .await;
    eventually_async("gRPC health SERVING again", || async {
        serving(&url).await
    })
    .await;
    let after = scrape(&metrics).await;
    for connection in ["publish", "tail"] {
        let labels = [("connection", connection)];
        assert_eq!(after.value("loggate_broker_connected", &labels), 1.0);
        assert_eq!(
            after.value("loggate_broker_reconnects_total", &labels)
                - before.value("loggate_broker_reconnects_total", &labels),
            1.0,
            "{connection}: one reconnect"
        );
    }
}

#[tokio::test]
async fn a_hostile_http_client_does_not_hurt_grpc_or_scrapes() {
    let (exchange, history, _names) = fresh_names();
    let (_gateway, url, metrics) =
        gateway(&["--exchange", &exchange, "--history-queue", &history]).await;
    // A head far over the bound: refused (431) or cut off, never read whole.
    let huge = format!(
        "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Junk: {}\r\n\r\n",
        "j".repeat(1 << 20)
    );
    // Closed while we wrote (None) is a refusal too.
    if let Some(answer) = exchange_lossy(&metrics, huge.as_bytes()).await {
        assert!(
            answer.starts_with(b"HTTP/1.1 431"),
            "{}",
            String::from_utf8_lossy(&answer[..answer.len().min(200)])
        );
    }
    // Slow clients holding every place the listener has, sending a head a
    // byte at a time and never finishing it.
    let mut slow = Vec::new();
    for _ in 0..loggate::http::MAX_CONNECTIONS + 8 {
        let mut stream = TcpStream::connect(&metrics).await.expect("connect");
        stream.write_all(b"GET /metr").await.expect("write");
        slow.push(stream);
    }
    // gRPC is unaffected meanwhile.
    let started = std::time::Instant::now();
    client(&url)
        .await
        .log(pb::LogRequest {
            record: Some(record("metrics", "while HTTP is under attack")),
        })
        .await
        .expect("gRPC serves");
    assert!(started.elapsed() < Duration::from_secs(5));
    // The slow ones are cut off after the head timeout, and scrapes work again.
    eventually_async("scrapes work once the slow heads time out", || async {
        roundtrip(
            &metrics,
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await
        .is_ok_and(|answer| answer.starts_with(b"HTTP/1.1 200"))
    })
    .await;
    drop(slow);
    let scraped = scrape(&metrics).await;
    assert_eq!(
        scraped.value(RECORDS, &taken("Log")),
        1.0,
        "the record is counted"
    );
}

/// Like [`roundtrip`], but a connection reset while writing or reading is `None`.
async fn exchange_lossy(address: &str, request: &[u8]) -> Option<Vec<u8>> {
    let mut stream = TcpStream::connect(address).await.expect("connect");
    let _ = stream.write_all(request).await;
    let mut bytes = Vec::new();
    match tokio::time::timeout(WAIT, stream.read_to_end(&mut bytes)).await {
        Ok(Ok(_)) if !bytes.is_empty() => Some(bytes),
        Ok(_) => None,
        Err(_) => panic!("the connection was neither answered nor closed"),
    }
}

#[tokio::test]
async fn log_format_json_writes_one_json_object_per_line() {
    let (exchange, history, _names) = fresh_names();
    let (mut gateway, url, stderr) = serve_process_logged(&[
        "--exchange",
        &exchange,
        "--history-queue",
        &history,
        "--log-format",
        "json",
    ])
    .await;
    client(&url)
        .await
        .log(pb::LogRequest {
            record: Some(record("metrics", "logged")),
        })
        .await
        .expect("taken");
    let pid = gateway.id().expect("running").to_string();
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill runs");
    assert!(sent.success());
    let status = tokio::time::timeout(WAIT, gateway.wait())
        .await
        .expect("exits in time")
        .expect("status");
    assert!(status.success(), "{status}");
    stderr.settle(Duration::from_millis(200)).await;

    let text = stderr.head();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), stderr.lines(), "every line kept: {text}");
    let objects: Vec<serde_json::Map<String, serde_json::Value>> = lines
        .iter()
        .map(|line| match serde_json::from_str(line) {
            Ok(serde_json::Value::Object(object)) => object,
            other => panic!("not a JSON object ({other:?}): {line}"),
        })
        .collect();
    for object in &objects {
        for key in ["timestamp", "level", "target", "message"] {
            assert!(object.contains_key(key), "{key} in {object:?}");
        }
    }
    // The event's fields sit beside the message, where shippers look.
    let serving = objects
        .iter()
        .find(|o| o["message"] == "serving")
        .unwrap_or_else(|| panic!("a serving line: {text}"));
    assert_eq!(serving["exchange"], exchange.as_str());
    assert_eq!(serving["level"], "INFO");
    assert!(objects.iter().any(|o| o["message"] == "stopped"), "{text}");
}

#[tokio::test]
async fn otlp_exports_are_counted_with_their_rejected_records() {
    use loggate::proto::otlp::{
        collector::{logs_service_client::LogsServiceClient, ExportLogsServiceRequest},
        common::{any_value::Value, AnyValue, KeyValue},
        logs::{LogRecord, ResourceLogs, ScopeLogs},
        resource::Resource,
    };
    let (exchange, history, _names) = fresh_names();
    let (_gateway, url, metrics) =
        gateway(&["--exchange", &exchange, "--history-queue", &history]).await;
    let channel = Channel::from_shared(url)
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let mut otlp = LogsServiceClient::new(channel);
    let text = |s: &str| {
        Some(AnyValue {
            value: Some(Value::StringValue(s.into())),
        })
    };
    let good = |message: &str| LogRecord {
        body: text(message),
        ..Default::default()
    };
    let before = scrape(&metrics).await;
    // Three records: two taken, one rejected (a severity OTLP does not define).
    let request = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: text("metrics-otlp"),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: vec![
                    good("one"),
                    LogRecord {
                        severity_number: 99,
                        ..good("bad")
                    },
                    good("two"),
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let response = otlp.export(request).await.expect("exported").into_inner();
    assert_eq!(
        response.partial_success.map(|p| p.rejected_log_records),
        Some(1)
    );
    let after = scrape(&metrics).await;
    let delta = |name: &str, labels: &[(&str, &str)]| {
        after.value(name, labels) - before.value(name, labels)
    };
    assert_eq!(delta("loggate_records_total", &taken("Export")), 2.0);
    assert_eq!(delta("loggate_otlp_records_rejected_total", &[]), 1.0);
}

/// `--metrics-listen` on a free port for a gateway that may not be SERVING:
/// returns once `/healthz` answers.
async fn unready_gateway(args: &[&str]) -> (Child, String, String) {
    let metrics = free_address();
    let mut all = vec!["--metrics-listen", metrics.as_str()];
    all.extend_from_slice(args);
    let (child, url) = serve_process(&all).await;
    eventually_async("/healthz answers", || async {
        try_get(&metrics, "/healthz")
            .await
            .is_ok_and(|answer| answer.status == 200)
    })
    .await;
    (child, url, metrics)
}

#[tokio::test]
async fn spool_gauges_and_the_drained_counter_follow_the_spool() {
    const RECORDS: usize = 7;
    let vhost = Vhost::create();
    vhost.revoke();
    let spool = std::env::temp_dir().join(unique("spool"));
    let spool = spool.to_str().expect("a UTF-8 temp path");
    let url_of_vhost = vhost.url();
    let (_gateway, url, metrics) = unready_gateway(&[
        "--amqp-url",
        &url_of_vhost,
        "--spool-dir",
        spool,
        "--broker-wait",
        "300ms",
    ])
    .await;
    let pending = |scrape: &Scrape| {
        (
            scrape.value("loggate_spool_pending_records", &[]),
            scrape.value("loggate_spool_pending_bytes", &[]),
            scrape.value("loggate_spool_drained_records_total", &[]),
        )
    };
    assert_eq!(pending(&scrape(&metrics).await), (0.0, 0.0, 0.0));

    let mut client = client(&url).await;
    let records = (0..RECORDS)
        .map(|i| record("spooled", &format!("s{i}")))
        .collect();
    let answer = client
        .log_batch(pb::LogBatchRequest { records })
        .await
        .expect("spooled")
        .into_inner();
    assert!(answer.spooled);
    let (records, bytes, drained) = pending(&scrape(&metrics).await);
    assert_eq!((records, drained), (RECORDS as f64, 0.0));
    assert!(bytes > 0.0, "the spooled entries take bytes: {bytes}");

    vhost.grant();
    eventually_async("the spool drains", || async {
        pending(&scrape(&metrics).await) == (0.0, 0.0, RECORDS as f64)
    })
    .await;
    let _ = std::fs::remove_dir_all(spool);
}

#[tokio::test]
async fn a_follower_the_hub_lets_go_is_counted_as_a_detach() {
    // The setting of tail.rs's slow-follower test: one that reads nothing
    // behind a 1 KiB HTTP/2 window, far more records than its buffers hold.
    const RECORDS: usize = 3_000;
    let (exchange, history, _names) = fresh_names();
    let (_gateway, url, metrics) = gateway(&[
        "--exchange",
        &exchange,
        "--history-queue",
        &history,
        "--tail-hub-queue",
        "64",
        "--tail-buffer",
        "1",
    ])
    .await;
    let mut slow = slow_live_tail(&url).await;
    let tails = |scrape: &Scrape| {
        (
            scrape.value("loggate_tails_active", &[("kind", "hub")]),
            scrape.value("loggate_tails_active", &[("kind", "own")]),
        )
    };
    eventually_async("the tail joins the hub", || async {
        scrape(&metrics)
            .await
            .value("loggate_tails_active", &[("kind", "hub")])
            == 1.0
    })
    .await;
    assert_eq!(
        scrape(&metrics)
            .await
            .value("loggate_hub_detaches_total", &[]),
        0.0
    );

    let mut client = client(&url).await;
    for chunk in 0..RECORDS / 100 {
        let records = (0..100)
            .map(|i| record("m", &format!("m{chunk}-{i}")))
            .collect();
        client
            .log_batch(pb::LogBatchRequest { records })
            .await
            .expect("taken");
    }
    eventually_async("the hub lets the slow follower go", || async {
        scrape(&metrics)
            .await
            .value("loggate_hub_detaches_total", &[])
            == 1.0
    })
    .await;
    // It moves to a consumer of its own when it next asks for a record.
    let mut read = 0;
    while read < RECORDS {
        let response = tokio::time::timeout(WAIT, slow.message())
            .await
            .expect("records keep coming")
            .expect("no error")
            .expect("open");
        if let Some(pb::tail_response::Event::Record(_)) = response.event {
            read += 1;
        }
    }
    let after = scrape(&metrics).await;
    assert_eq!(
        tails(&after),
        (0.0, 1.0),
        "counted once, as a tail of its own"
    );
    assert_eq!(after.value("loggate_hub_detaches_total", &[]), 1.0);
}

#[tokio::test]
async fn foreign_messages_on_the_stream_are_counted_as_skipped() {
    let (exchange, history, _names) = fresh_names();
    let (_gateway, url, metrics) =
        gateway(&["--exchange", &exchange, "--history-queue", &history]).await;
    let skipped = |scrape: &Scrape| {
        scrape.value(
            "loggate_stream_messages_skipped_total",
            &[("reason", "invalid")],
        )
    };
    assert_eq!(skipped(&scrape(&metrics).await), 0.0);
    // Read by a from-the-start tail, which ends once it has seen the lot.
    loggate_testkit::publish_raw(&exchange, "x.info", "application/json", b"not a record").await;
    loggate_testkit::publish_raw(&exchange, "x.info", "application/json", b"{\"id\":1}").await;
    let mut client = client(&url).await;
    client
        .log(pb::LogRequest {
            record: Some(record("x", "a real one")),
        })
        .await
        .expect("taken");
    let mut tail = client
        .tail(pb::TailRequest {
            start: Some(pb::tail_request::Start::FromBeginning(true)),
            history_only: true,
            ..Default::default()
        })
        .await
        .expect("tail")
        .into_inner();
    let mut records = 0;
    while let Some(response) = tokio::time::timeout(WAIT, tail.message())
        .await
        .expect("the history-only tail ends")
        .expect("no error")
    {
        if let Some(pb::tail_response::Event::Record(_)) = response.event {
            records += 1;
        }
    }
    assert_eq!(records, 1);
    assert_eq!(skipped(&scrape(&metrics).await), 2.0);
}
