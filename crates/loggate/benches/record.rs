//! The per-record hot path, without the network: validation (wire record →
//! Record), routing key, JSON body encoding, and decoding (what Tail does).
//! `cargo bench --bench record`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use loggate::proto::v1 as pb;
use loggate::record::{Acceptance, Limits, Record};
use time::OffsetDateTime;

fn wire_record() -> pb::LogRecord {
    pb::LogRecord {
        service: "checkout".into(),
        node: "pod-7".into(),
        level: pb::Level::Warn as i32,
        message: "payment provider answered slowly; retrying with backoff".into(),
        attributes: [
            ("order".to_owned(), "A-1042".to_owned()),
            ("attempt".to_owned(), "2".to_owned()),
        ]
        .into(),
        trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
        span_id: "00f067aa0ba902b7".into(),
        ..Default::default()
    }
}

fn acceptance() -> Acceptance<'static> {
    Acceptance {
        received_time: OffsetDateTime::now_utc(),
        gateway: "gw-1",
        principal: "",
        traceparent: None,
        limits: Limits::default(),
    }
}

fn record_path(c: &mut Criterion) {
    let mut group = c.benchmark_group("record");
    group.throughput(Throughput::Elements(1));

    let input = wire_record();
    let accept = acceptance();
    group.bench_function("validate", |b| {
        b.iter_batched(
            || input.clone(),
            |input| black_box(accept.accept(input)),
            criterion::BatchSize::SmallInput,
        )
    });

    let record = accept.accept(wire_record()).expect("valid");
    group.bench_function("routing_key", |b| {
        b.iter(|| black_box(record.routing_key()))
    });

    let mut buf = Vec::with_capacity(1024);
    group.bench_function("encode_json_reused_buffer", |b| {
        b.iter(|| {
            buf.clear();
            record.encode_into(&mut buf);
            black_box(buf.len())
        })
    });

    let body = record.to_json();
    group.bench_function("decode_json", |b| {
        b.iter(|| black_box(Record::from_json(&body)))
    });
    group.finish();
}

criterion_group!(benches, record_path);
criterion_main!(benches);
