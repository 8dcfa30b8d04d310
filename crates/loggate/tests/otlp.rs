//! OTLP/gRPC logs in (`opentelemetry.proto.collector.logs.v1.LogsService/Export`)
//! against a real RabbitMQ, with the client opentelemetry-proto generates:
//! every mapped field read back through Tail, routing keys seen by an
//! independent consumer, partial success, auth, limits and hostile input.

use loggate::proto::otlp::{
    collector::{
        logs_service_client::LogsServiceClient, ExportLogsServiceRequest, ExportLogsServiceResponse,
    },
    common::{
        any_value::Value, AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
    },
    logs::{LogRecord, ResourceLogs, ScopeLogs},
    resource::Resource,
};
use loggate::proto::v1 as pb;
use loggate_testkit::{bearer, history, principal, AuthFile, Gateway, Probe};
use tonic::{codec::CompressionEncoding, transport::Channel, Code};

const TRACE: [u8; 16] = [
    0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36,
];
const SPAN: [u8; 8] = [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7];

fn any(value: Value) -> AnyValue {
    AnyValue { value: Some(value) }
}

fn string(s: &str) -> Option<AnyValue> {
    Some(any(Value::StringValue(s.into())))
}

fn kv(key: &str, value: Option<AnyValue>) -> KeyValue {
    KeyValue {
        key: key.into(),
        value,
        ..KeyValue::default()
    }
}

/// One resource (its attributes) with one scope holding `records`.
fn resource_logs(resource: Vec<KeyValue>, records: Vec<LogRecord>) -> ResourceLogs {
    ResourceLogs {
        resource: Some(Resource {
            attributes: resource,
            ..Resource::default()
        }),
        scope_logs: vec![ScopeLogs {
            scope: Some(InstrumentationScope {
                name: "shop.payments".into(),
                version: "2.1.0".into(),
                ..InstrumentationScope::default()
            }),
            log_records: records,
            ..ScopeLogs::default()
        }],
        ..ResourceLogs::default()
    }
}

fn request(resource_logs: Vec<ResourceLogs>) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest { resource_logs }
}

fn service(name: &str) -> Vec<KeyValue> {
    vec![kv("service.name", string(name))]
}

fn message(text: &str) -> LogRecord {
    LogRecord {
        body: string(text),
        ..LogRecord::default()
    }
}

async fn client(gateway: &Gateway) -> LogsServiceClient<Channel> {
    LogsServiceClient::new(gateway.channel().await)
}

async fn export(gateway: &Gateway, request: ExportLogsServiceRequest) -> ExportLogsServiceResponse {
    client(gateway)
        .await
        .export(request)
        .await
        .expect("exported")
        .into_inner()
}

async fn tailed(gateway: &Gateway) -> Vec<pb::LogRecord> {
    history(&mut gateway.client().await).await
}

#[tokio::test]
async fn every_mapped_field_reaches_rabbitmq_and_the_tail() {
    let gateway = Gateway::start(&[]).await;
    let mut probe = Probe::bind(&gateway.exchange, "#").await;
    let record = LogRecord {
        time_unix_nano: 1_700_000_000_123_456_789,
        observed_time_unix_nano: 1_700_000_001_000_000_000,
        severity_number: 17,
        severity_text: "ERROR".into(),
        body: string("card declined"),
        attributes: vec![
            kv("order", Some(any(Value::IntValue(42)))),
            kv("retry", Some(any(Value::BoolValue(true)))),
            kv("amount", Some(any(Value::DoubleValue(9.5)))),
        ],
        trace_id: TRACE.to_vec(),
        span_id: SPAN.to_vec(),
        ..LogRecord::default()
    };
    let response = export(
        &gateway,
        request(vec![resource_logs(
            vec![
                kv("service.name", string("billing")),
                kv("service.instance.id", string("instance-3")),
                kv("host.name", string("host-7")),
                kv("deployment.environment", string("prod")),
            ],
            vec![record],
        )]),
    )
    .await;
    assert_eq!(
        response.partial_success, None,
        "full success leaves it unset"
    );

    let delivery = probe.next().await;
    assert_eq!(delivery.routing_key.as_str(), "billing.error");
    let body: serde_json::Value = serde_json::from_slice(&delivery.data).expect("JSON body");
    assert_eq!(body["time"], "2023-11-14T22:13:20.123456789Z");

    let [tailed] = &tailed(&gateway).await[..] else {
        panic!("one record");
    };
    assert_eq!(tailed.service, "billing");
    assert_eq!(tailed.node, "host-7", "host.name first");
    assert_eq!(tailed.level, pb::Level::Error as i32);
    assert_eq!(tailed.message, "card declined");
    assert_eq!(
        tailed.time,
        Some(prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 123_456_789
        })
    );
    assert_eq!(tailed.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(tailed.span_id, "00f067aa0ba902b7");
    assert_eq!(tailed.gateway, gateway.instance);
    assert_eq!(
        uuid::Uuid::parse_str(&tailed.id)
            .expect("an id")
            .get_version_num(),
        7
    );
    let expected: std::collections::BTreeMap<String, String> = [
        ("order", "42"),
        ("retry", "true"),
        ("amount", "9.5"),
        ("scope.name", "shop.payments"),
        ("scope.version", "2.1.0"),
        ("resource.service.instance.id", "instance-3"),
        ("resource.deployment.environment", "prod"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(tailed.attributes, expected);
}

#[tokio::test]
async fn every_severity_range_routes_as_its_level() {
    let gateway = Gateway::start(&[]).await;
    let mut probe = Probe::bind(&gateway.exchange, "#").await;
    let mut records: Vec<LogRecord> = (1..=24)
        .map(|n| LogRecord {
            severity_number: n,
            ..message(&format!("n{n}"))
        })
        .collect();
    for text in ["WARNING", "critical", "Debug", "", "chatty"] {
        records.push(LogRecord {
            severity_text: text.into(),
            ..message(text)
        });
    }
    export(
        &gateway,
        request(vec![resource_logs(service("sev"), records)]),
    )
    .await;

    let words = ["trace", "debug", "info", "warn", "error", "fatal"];
    let mut expected: Vec<String> = (0..24).map(|n| format!("sev.{}", words[n / 4])).collect();
    for word in ["warn", "fatal", "debug", "info", "info"] {
        expected.push(format!("sev.{word}"));
    }
    let mut keys = Vec::new();
    for _ in 0..expected.len() {
        keys.push(probe.next().await.routing_key.to_string());
    }
    assert_eq!(keys, expected);
    let levels: Vec<i32> = tailed(&gateway).await.iter().map(|r| r.level).collect();
    assert_eq!(levels[16], pb::Level::Error as i32, "17 is the first ERROR");
    assert_eq!(levels[20], pb::Level::Fatal as i32, "21 is the first FATAL");
}

#[tokio::test]
async fn non_string_bodies_are_rendered_as_json() {
    let gateway = Gateway::start(&[]).await;
    let bodies = [
        Value::IntValue(-7),
        Value::BoolValue(false),
        Value::DoubleValue(0.5),
        Value::BytesValue(b"\x00\xffhi".to_vec()),
        Value::ArrayValue(ArrayValue {
            values: vec![
                any(Value::IntValue(1)),
                any(Value::StringValue("a\"b".into())),
            ],
        }),
        Value::KvlistValue(KeyValueList {
            values: vec![
                kv("user", string("ann")),
                kv(
                    "tags",
                    Some(any(Value::ArrayValue(ArrayValue {
                        values: vec![any(Value::BoolValue(true))],
                    }))),
                ),
                kv("none", None),
            ],
        }),
    ];
    let records = bodies
        .into_iter()
        .map(|body| LogRecord {
            body: Some(any(body)),
            ..LogRecord::default()
        })
        .chain([LogRecord::default()])
        .collect();
    export(
        &gateway,
        request(vec![resource_logs(service("json"), records)]),
    )
    .await;

    let messages: Vec<String> = tailed(&gateway)
        .await
        .into_iter()
        .map(|r| r.message)
        .collect();
    assert_eq!(
        messages,
        [
            "-7",
            "false",
            "0.5",
            "\"AP9oaQ==\"",
            r#"[1,"a\"b"]"#,
            r#"{"user":"ann","tags":[true],"none":null}"#,
            "",
        ]
    );
}

#[tokio::test]
async fn an_oversize_message_and_attributes_are_cut_or_dropped_and_counted() {
    let gateway = Gateway::start(&["--max-message-bytes", "1KiB"]).await;
    let mut attributes = vec![kv("big", string(&"é".repeat(5000)))];
    attributes.extend((0..80).map(|i| kv(&format!("k{i:02}"), string("v"))));
    let records = vec![
        LogRecord {
            body: string(&"x".repeat(5000)),
            attributes,
            ..LogRecord::default()
        },
        LogRecord {
            // Deep, wide JSON: rendered only up to the limit.
            body: Some(any(Value::ArrayValue(ArrayValue {
                values: (0..10_000).map(|i| any(Value::IntValue(i))).collect(),
            }))),
            ..LogRecord::default()
        },
    ];
    let response = export(
        &gateway,
        request(vec![resource_logs(service("big"), records)]),
    )
    .await;
    assert_eq!(response.partial_success, None, "cut, not rejected");

    let [first, second] = &tailed(&gateway).await[..] else {
        panic!("two records");
    };
    assert_eq!(first.message, "x".repeat(1024));
    assert_eq!(first.attributes["loggate.message_truncated"], "true");
    assert_eq!(
        first.attributes["big"].len(),
        8 * 1024,
        "cut to the value limit"
    );
    assert_eq!(first.attributes["loggate.attributes_truncated"], "1");
    assert_eq!(first.attributes.len(), 64);
    // 64 places: three notes, big and k00..k59; the other 20 and the scope's 2 dropped.
    assert!(first.attributes.contains_key("k59") && !first.attributes.contains_key("k60"));
    assert_eq!(first.attributes["loggate.attributes_dropped"], "22");
    assert_eq!(second.message.len(), 1024);
    assert!(second.message.starts_with("[0,1,2,"));
    assert_eq!(second.attributes["loggate.message_truncated"], "true");
}

#[tokio::test]
async fn service_name_is_sanitised_and_defaults_to_unknown_service() {
    let gateway = Gateway::start(&[]).await;
    let mut probe = Probe::bind(&gateway.exchange, "#").await;
    let long = "s".repeat(100);
    let resources = vec![
        resource_logs(vec![kv("host.name", string("h"))], vec![message("no name")]),
        resource_logs(service("unknown_service:foo"), vec![message("sdk default")]),
        resource_logs(
            service("shop.checkout v2/é"),
            vec![message("bad characters")],
        ),
        resource_logs(service(&long), vec![message("too long")]),
    ];
    export(&gateway, request(resources)).await;

    let mut keys = Vec::new();
    for _ in 0..4 {
        keys.push(probe.next().await.routing_key.to_string());
    }
    assert_eq!(
        keys,
        [
            "unknown_service.info".to_owned(),
            "unknown_service.info".to_owned(),
            "shop_checkout_v2__.info".to_owned(),
            format!("{}.info", "s".repeat(64)),
        ]
    );
    let services: Vec<String> = tailed(&gateway)
        .await
        .into_iter()
        .map(|r| r.service)
        .collect();
    assert_eq!(services[2], "shop_checkout_v2__");
}

#[tokio::test]
async fn a_bad_record_is_rejected_in_partial_success_and_the_rest_are_published() {
    let gateway = Gateway::start(&[]).await;
    let mut probe = Probe::bind(&gateway.exchange, "#").await;
    let records = vec![
        message("first"),
        LogRecord {
            trace_id: TRACE[..5].to_vec(),
            ..message("bad trace id")
        },
        LogRecord {
            trace_id: TRACE.to_vec(),
            span_id: SPAN.to_vec(),
            ..message("third")
        },
        LogRecord {
            severity_number: 99,
            ..message("bad severity")
        },
    ];
    let response = export(
        &gateway,
        request(vec![resource_logs(service("part"), records)]),
    )
    .await;
    let partial = response.partial_success.expect("partial success");
    assert_eq!(partial.rejected_log_records, 2);
    assert_eq!(
        partial.error_message,
        "resource_logs[0].scope_logs[0].log_records[1].trace_id: 5 bytes, not 16 \
         (and 1 more rejected)"
    );

    assert_eq!(probe.next().await.routing_key.as_str(), "part.info");
    let messages: Vec<String> = tailed(&gateway)
        .await
        .into_iter()
        .map(|r| r.message)
        .collect();
    assert_eq!(messages, ["first", "third"]);
}

#[tokio::test]
async fn all_records_rejected_is_still_an_answer_not_an_error() {
    let gateway = Gateway::start(&[]).await;
    let response = export(
        &gateway,
        request(vec![resource_logs(
            service("none"),
            vec![LogRecord {
                span_id: SPAN.to_vec(),
                ..message("a span without a trace")
            }],
        )]),
    )
    .await;
    let partial = response.partial_success.expect("partial success");
    assert_eq!(partial.rejected_log_records, 1);
    assert!(
        partial
            .error_message
            .ends_with("span_id: is only allowed with a trace_id"),
        "{}",
        partial.error_message
    );
    assert!(tailed(&gateway).await.is_empty());
}

const WRITER: &str = "otlp-writer-token";

fn auth_file() -> AuthFile {
    AuthFile::new(&principal(
        "checkout-prod",
        WRITER,
        r#"["checkout", "checkout-*"]"#,
        "[]",
    ))
}

#[tokio::test]
async fn export_needs_credentials_and_stays_within_the_log_scope() {
    let auth = auth_file();
    let gateway = Gateway::start(&["--auth-file", auth.path()]).await;
    let mut probe = Probe::bind(&gateway.exchange, "#").await;
    let mut client = client(&gateway).await;
    let checkout = || {
        request(vec![resource_logs(
            service("checkout-eu"),
            vec![message("paid")],
        )])
    };

    let anonymous = client.export(checkout()).await.expect_err("no token");
    assert_eq!(anonymous.code(), Code::Unauthenticated, "{anonymous:?}");
    let unknown = client
        .export(bearer("guess", checkout()))
        .await
        .expect_err("unknown token");
    assert_eq!(unknown.code(), Code::Unauthenticated, "{unknown:?}");

    // One record outside the scope refuses the whole export, as in LogBatch.
    let mixed = request(vec![
        resource_logs(service("checkout"), vec![message("mine")]),
        resource_logs(service("payments"), vec![message("not mine")]),
    ]);
    let denied = client
        .export(bearer(WRITER, mixed))
        .await
        .expect_err("payments is outside the scope");
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    assert!(
        denied
            .message()
            .contains("resource_logs[1].scope_logs[0].log_records[0].service")
            && denied.message().contains("payments"),
        "{denied:?}"
    );

    client
        .export(bearer(WRITER, checkout()))
        .await
        .expect("checkout-* is in the scope");
    let delivery = probe.next().await;
    assert_eq!(
        delivery.routing_key.as_str(),
        "checkout-eu.info",
        "nothing of the refused calls was published"
    );
    let body: serde_json::Value = serde_json::from_slice(&delivery.data).expect("JSON body");
    assert_eq!(body["principal"], "checkout-prod");
}

#[tokio::test]
async fn the_principal_rate_quota_counts_otlp_records() {
    let auth = auth_file();
    let gateway = Gateway::start(&[
        "--auth-file",
        auth.path(),
        "--rate-per-principal",
        "1",
        "--burst-per-principal",
        "3",
    ])
    .await;
    let mut client = client(&gateway).await;
    let records = |n: usize| {
        request(vec![resource_logs(
            service("checkout"),
            (0..n).map(|i| message(&format!("m{i}"))).collect(),
        )])
    };
    client
        .export(bearer(WRITER, records(3)))
        .await
        .expect("within the burst");
    let refused = client
        .export(bearer(WRITER, records(3)))
        .await
        .expect_err("over the rate");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
}

#[tokio::test]
async fn more_records_than_max_batch_are_refused_whole() {
    let gateway = Gateway::start(&["--max-batch", "3"]).await;
    let records = (0..2)
        .map(|i| message(&format!("m{i}")))
        .collect::<Vec<_>>();
    // Counted across resources: 2 + 2 > 3.
    let refused = client(&gateway)
        .await
        .export(request(vec![
            resource_logs(service("a"), records.clone()),
            resource_logs(service("b"), records),
        ]))
        .await
        .expect_err("over --max-batch");
    assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
    assert!(refused.message().contains("--max-batch"), "{refused:?}");
    assert!(tailed(&gateway).await.is_empty());
}

#[tokio::test]
async fn hostile_nesting_gets_an_error_or_a_bounded_rendering_never_a_crash() {
    let gateway = Gateway::start(&[]).await;
    let nested = |depth: usize| {
        let mut value = any(Value::IntValue(1));
        for _ in 0..depth {
            value = any(Value::ArrayValue(ArrayValue {
                values: vec![value],
            }));
        }
        request(vec![resource_logs(
            service("deep"),
            vec![LogRecord {
                body: Some(value),
                ..LogRecord::default()
            }],
        )])
    };
    // 40 levels decode (prost allows 100 nested messages, two a level) and
    // are rendered to 32.
    let response = export(&gateway, nested(40)).await;
    assert_eq!(response.partial_success, None);
    let [record] = &tailed(&gateway).await[..] else {
        panic!("one record");
    };
    assert_eq!(record.message.matches('[').count(), 32);
    assert_eq!(record.attributes["loggate.message_truncated"], "true");

    // Deeper than the decoder goes: refused whole, and the gateway serves on.
    let error = client(&gateway)
        .await
        .export(nested(200))
        .await
        .expect_err("too deep to decode");
    assert!(
        matches!(error.code(), Code::Internal | Code::InvalidArgument),
        "{error:?}"
    );
    export(&gateway, nested(1)).await;
    assert_eq!(gateway.health_status("").await, loggate_testkit::SERVING);
}

#[tokio::test]
async fn reflection_lists_and_describes_the_logs_service() {
    use tokio_stream::StreamExt as _;
    use tonic_reflection::pb::v1::{
        server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        ServerReflectionRequest,
    };

    let gateway = Gateway::start(&[]).await;
    let mut reflection = ServerReflectionClient::new(gateway.channel().await);
    let ask = |message| ServerReflectionRequest {
        host: String::new(),
        message_request: Some(message),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter([
            ask(MessageRequest::ListServices(String::new())),
            ask(MessageRequest::FileContainingSymbol(
                "opentelemetry.proto.collector.logs.v1.LogsService".into(),
            )),
            ask(MessageRequest::FileContainingSymbol(
                "opentelemetry.proto.collector.trace.v1.TraceService".into(),
            )),
        ]))
        .await
        .expect("reflection")
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) = responses
        .next()
        .await
        .expect("a list")
        .expect("ok")
        .message_response
    else {
        panic!("expected a service list");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"opentelemetry.proto.collector.logs.v1.LogsService".to_owned()),
        "{names:?}"
    );
    assert!(
        !names
            .iter()
            .any(|n| n.contains("TraceService") || n.contains("MetricsService")),
        "only what is served: {names:?}"
    );
    let Some(MessageResponse::FileDescriptorResponse(files)) = responses
        .next()
        .await
        .expect("the file")
        .expect("ok")
        .message_response
    else {
        panic!("expected the service's file");
    };
    let [file] = &files.file_descriptor_proto[..] else {
        panic!("one file");
    };
    let file = <prost_types::FileDescriptorProto as prost::Message>::decode(&file[..])
        .expect("a file descriptor");
    assert_eq!(
        file.name(),
        "opentelemetry/proto/collector/logs/v1/logs_service.proto"
    );
    let unknown = responses
        .next()
        .await
        .expect("an answer")
        .expect_err("TraceService is not served");
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");

    // What grpcurl does next to describe it: each import (and theirs) by name.
    assert_eq!(file.dependency, ["opentelemetry/proto/logs/v1/logs.proto"]);
    let imports = [
        "opentelemetry/proto/logs/v1/logs.proto",
        "opentelemetry/proto/common/v1/common.proto",
        "opentelemetry/proto/resource/v1/resource.proto",
    ];
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter(
            imports.map(|name| ask(MessageRequest::FileByFilename(name.into()))),
        ))
        .await
        .expect("reflection")
        .into_inner();
    for name in imports {
        let answer = responses.next().await.expect("an answer").expect("ok");
        assert!(
            matches!(
                answer.message_response,
                Some(MessageResponse::FileDescriptorResponse(_))
            ),
            "{name}: {answer:?}"
        );
    }
}

#[tokio::test]
async fn a_gzip_compressed_export_is_accepted() {
    let gateway = Gateway::start(&[]).await;
    let response = client(&gateway)
        .await
        .send_compressed(CompressionEncoding::Gzip)
        .export(request(vec![resource_logs(
            service("zipped"),
            vec![message("squeezed")],
        )]))
        .await
        .expect("a gzip request is accepted")
        .into_inner();
    assert_eq!(response.partial_success, None);
    let records = tailed(&gateway).await;
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].message, "squeezed");
}

#[tokio::test]
async fn a_gzip_bomb_is_refused_by_its_inflated_size_and_the_gateway_serves_on() {
    let gateway = Gateway::start(&[]).await;
    // ~100 KiB on the wire, 80 MiB inflated: past the 64 MiB request bound.
    let huge = "a".repeat(80 * 1024 * 1024);
    let refused = client(&gateway)
        .await
        .send_compressed(CompressionEncoding::Gzip)
        .export(request(vec![resource_logs(
            service("bomb"),
            vec![message(&huge)],
        )]))
        .await
        .expect_err("inflates past the bound");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(tailed(&gateway).await.is_empty());
    export(
        &gateway,
        request(vec![resource_logs(service("after"), vec![message("fine")])]),
    )
    .await;
    assert_eq!(tailed(&gateway).await.len(), 1);
}
