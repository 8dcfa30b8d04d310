//! OTLP logs in: an `ExportLogsServiceRequest` becomes records, each mapped
//! as README.md's "OTLP" table says and then validated and stamped by the
//! same [`Acceptance`] as a LogBatch record. A record that cannot be mapped
//! or fails validation is rejected alone, with the place and the reason, so
//! the others can still be published (OTLP's partial success).
//!
//! Everything a client sends is bounded on the way: the JSON rendering of a
//! non-string body or attribute stops at its byte limit and at
//! [`MAX_JSON_DEPTH`], and attributes past the record limits are cut or
//! dropped, and counted, rather than refusing the record.

use std::collections::BTreeMap;
use std::fmt;

use super::validate::{
    MAX_ATTRIBUTES, MAX_ATTRIBUTE_KEY_CHARS, MAX_ATTRIBUTE_VALUE_BYTES, MAX_NODE_CHARS,
    MAX_SERVICE_CHARS,
};
use super::{hex, Acceptance, Invalid, Level, Record};
use crate::proto::otlp::{
    collector::ExportLogsServiceRequest,
    common::{any_value::Value, AnyValue, InstrumentationScope, KeyValue},
    logs::LogRecord as OtlpRecord,
};
use crate::proto::v1 as pb;

/// The service of records whose resource names none, or only the SDK's
/// default `unknown_service:<process>`.
pub const UNKNOWN_SERVICE: &str = "unknown_service";
/// Set to `true` on a record whose message was cut to `--max-message-bytes`
/// (or whose JSON rendering went deeper than [`MAX_JSON_DEPTH`]).
pub const MESSAGE_TRUNCATED: &str = "loggate.message_truncated";
/// How many attributes a record lost: over the count limit, an empty or
/// too-long key, a repeated key, plus those the sender reported dropped.
pub const ATTRIBUTES_DROPPED: &str = "loggate.attributes_dropped";
/// How many attribute values were cut to the value limit.
pub const ATTRIBUTES_TRUNCATED: &str = "loggate.attributes_truncated";
/// Nesting of arrays and key-value lists rendered as JSON; deeper values
/// are written as the string `"…"` and the rendering counts as cut.
pub const MAX_JSON_DEPTH: usize = 32;

/// Resource attributes that name the node, in order of preference.
const NODE_KEYS: [&str; 3] = ["host.name", "service.instance.id", "k8s.pod.name"];

/// Where a record sits in the request, as its error messages name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    pub resource: usize,
    pub scope: usize,
    pub record: usize,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "resource_logs[{}].scope_logs[{}].log_records[{}]",
            self.resource, self.scope, self.record
        )
    }
}

/// A request's records: the accepted ones in request order (with their
/// places), and how many were rejected, with the first reason.
#[derive(Debug, Default)]
pub struct Mapped {
    pub records: Vec<Record>,
    /// `places[i]` is where `records[i]` came from.
    pub places: Vec<Place>,
    pub rejected: usize,
    /// Why the first rejected record was, with its place.
    pub first_rejection: Option<Invalid>,
}

impl Mapped {
    /// The `error_message` of OTLP's partial success: the first reason,
    /// and how many more there were.
    pub fn rejection_message(&self) -> String {
        match (&self.first_rejection, self.rejected) {
            (None, _) => String::new(),
            (Some(first), 0 | 1) => first.to_string(),
            (Some(first), n) => format!("{first} (and {} more rejected)", n - 1),
        }
    }
}

/// How many log records `request` carries.
pub fn count(request: &ExportLogsServiceRequest) -> usize {
    request
        .resource_logs
        .iter()
        .flat_map(|resource| &resource.scope_logs)
        .map(|scope| scope.log_records.len())
        .sum()
}

/// Maps, validates and stamps every record of `request`.
pub fn accept(acceptance: &Acceptance<'_>, request: ExportLogsServiceRequest) -> Mapped {
    let mut mapped = Mapped {
        records: Vec::with_capacity(count(&request)),
        ..Mapped::default()
    };
    for (r, resource_logs) in request.resource_logs.into_iter().enumerate() {
        let resource = Origin::of_resource(
            resource_logs
                .resource
                .map(|resource| (resource.attributes, resource.dropped_attributes_count))
                .unwrap_or_default(),
        );
        for (s, scope_logs) in resource_logs.scope_logs.into_iter().enumerate() {
            let scope = scope_attributes(scope_logs.scope);
            for (l, record) in scope_logs.log_records.into_iter().enumerate() {
                let place = Place {
                    resource: r,
                    scope: s,
                    record: l,
                };
                match map_record(acceptance, &resource, &scope, record) {
                    Ok(record) => {
                        mapped.records.push(record);
                        mapped.places.push(place);
                    }
                    Err(invalid) => {
                        mapped.rejected += 1;
                        if mapped.first_rejection.is_none() {
                            mapped.first_rejection = Some(invalid.within(&place.to_string()));
                        }
                    }
                }
            }
        }
    }
    mapped
}

/// What a resource gives each of its records: rendered once, cloned into each.
#[derive(Debug, Default)]
struct Origin {
    service: String,
    node: String,
    /// The other resource attributes, keys prefixed `resource.`.
    attributes: Vec<Attribute>,
    /// Attributes the sender dropped, or this mapping did (bad keys).
    dropped: usize,
}

/// An attribute rendered as strings, and whether its value was cut.
#[derive(Debug, Clone)]
struct Attribute {
    key: String,
    value: String,
    cut: bool,
}

impl Origin {
    fn of_resource((attributes, dropped): (Vec<KeyValue>, u32)) -> Origin {
        let mut origin = Origin {
            dropped: dropped as usize,
            ..Origin::default()
        };
        let mut service = None;
        let mut node: Option<(usize, String)> = None;
        let mut rest = Vec::with_capacity(attributes.len());
        for KeyValue { key, value, .. } in attributes {
            if key == "service.name" && service.is_none() {
                service = Some(render(value.as_ref(), MAX_ATTRIBUTE_VALUE_BYTES).0);
                continue;
            }
            if let Some(rank) = NODE_KEYS.iter().position(|k| *k == key) {
                let rendered = render(value.as_ref(), MAX_ATTRIBUTE_VALUE_BYTES).0;
                if !rendered.is_empty() && node.as_ref().is_none_or(|(best, _)| rank < *best) {
                    // A candidate it displaces goes back among the attributes.
                    if let Some((displaced, value)) = node.replace((rank, rendered)) {
                        rest.push((NODE_KEYS[displaced].to_owned(), Some(text(value))));
                    }
                    continue;
                }
            }
            rest.push((key, value));
        }
        origin.service = service_name(service.as_deref());
        origin.node = node.map(|(_, node)| node_name(&node)).unwrap_or_default();
        // Every record of the resource gets a copy of these: a request of a
        // few KiB must not turn into megabytes per record. So at most as
        // many as a record holds, within RESOURCE_BYTES; the rest are
        // dropped (and counted) unrendered.
        let mut bytes = 0;
        let mut keys = std::collections::HashSet::new();
        for (key, value) in rest {
            if origin.attributes.len() >= MAX_ATTRIBUTES || bytes >= RESOURCE_BYTES {
                origin.dropped += 1;
                continue;
            }
            match Attribute::render("resource.", key, value.as_ref()) {
                Some(attribute) if keys.insert(attribute.key.clone()) => {
                    bytes += attribute.key.len() + attribute.value.len();
                    origin.attributes.push(attribute);
                }
                _ => origin.dropped += 1,
            }
        }
        origin
    }
}

/// What a resource's attributes may add to each of its records, in bytes
/// (keys and values); past it they are dropped.
const RESOURCE_BYTES: usize = 16 * 1024;

fn text(value: String) -> AnyValue {
    AnyValue {
        value: Some(Value::StringValue(value)),
    }
}

/// `scope.name` and `scope.version`, when the scope has them.
fn scope_attributes(scope: Option<InstrumentationScope>) -> Vec<Attribute> {
    let Some(scope) = scope else {
        return Vec::new();
    };
    [("scope.name", scope.name), ("scope.version", scope.version)]
        .into_iter()
        .filter(|(_, value)| !value.is_empty())
        .filter_map(|(key, value)| Attribute::render("", key.to_owned(), Some(&text(value))))
        .collect()
}

impl Attribute {
    /// `None` for a key the record could not hold (empty, or too long
    /// once prefixed).
    fn render(prefix: &str, key: String, value: Option<&AnyValue>) -> Option<Attribute> {
        let chars = prefix.len() + key.chars().count();
        // `loggate.*` is the gateway's own namespace (its notes on what it
        // cut or dropped): a sender cannot forge them.
        let reserved = prefix.is_empty() && key.starts_with("loggate.");
        if key.is_empty() || chars > MAX_ATTRIBUTE_KEY_CHARS || reserved {
            return None;
        }
        let (value, cut) = render(value, MAX_ATTRIBUTE_VALUE_BYTES);
        let key = if prefix.is_empty() {
            key
        } else {
            format!("{prefix}{key}")
        };
        Some(Attribute { key, value, cut })
    }
}

/// service.name → a routing-key word: `unknown_service` for none or the
/// SDK's `unknown_service:*`, any character outside `[A-Za-z0-9_-]` → `_`,
/// cut at 64 characters.
pub fn service_name(raw: Option<&str>) -> String {
    match raw {
        None | Some("") => UNKNOWN_SERVICE.to_owned(),
        Some(name) if name.starts_with("unknown_service:") => UNKNOWN_SERVICE.to_owned(),
        Some(name) => name
            .chars()
            .take(MAX_SERVICE_CHARS)
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect(),
    }
}

/// A node name the record can hold: control characters → `_`, cut at 128
/// characters.
fn node_name(raw: &str) -> String {
    raw.chars()
        .take(MAX_NODE_CHARS)
        .map(|c| if c.is_control() { '_' } else { c })
        .collect()
}

/// severity_number's ranges; 0 (unspecified) → the level `severity_text`
/// names, else INFO. Numbers outside 0..=24 are refused.
pub fn level(number: i32, text: &str) -> Result<Level, Invalid> {
    Ok(match number {
        0 => level_named(text).unwrap_or(Level::Info),
        1..=4 => Level::Trace,
        5..=8 => Level::Debug,
        9..=12 => Level::Info,
        13..=16 => Level::Warn,
        17..=20 => Level::Error,
        21..=24 => Level::Fatal,
        _ => {
            return Err(Invalid::new(
                "severity_number",
                format_args!("{number} is not a SeverityNumber (0..=24)"),
            ))
        }
    })
}

/// The level a severity text names, in any case: our six words, OTLP's
/// short names with their 2–4 suffix (`INFO2`), and the usual spellings of
/// logging libraries (`WARNING`, `CRITICAL`, `ERR`).
fn level_named(text: &str) -> Option<Level> {
    let text = text.trim();
    let word = text.strip_suffix(['2', '3', '4']).unwrap_or(text);
    let word = word.to_ascii_lowercase();
    Some(match word.as_str() {
        "trace" => Level::Trace,
        "debug" => Level::Debug,
        "info" | "information" | "notice" => Level::Info,
        "warn" | "warning" => Level::Warn,
        "error" | "err" => Level::Error,
        "fatal" | "critical" | "crit" | "emerg" | "alert" | "panic" => Level::Fatal,
        _ => return None,
    })
}

fn map_record(
    acceptance: &Acceptance<'_>,
    origin: &Origin,
    scope: &[Attribute],
    record: OtlpRecord,
) -> Result<Record, Invalid> {
    let OtlpRecord {
        time_unix_nano,
        observed_time_unix_nano,
        severity_number,
        severity_text,
        body,
        attributes,
        dropped_attributes_count,
        flags: _,
        trace_id,
        span_id,
        event_name,
    } = record;
    let level = level(severity_number, &severity_text)?;
    let trace_id = id_hex("trace_id", &trace_id, 16)?;
    let span_id = id_hex("span_id", &span_id, 8)?;
    let (message, message_cut) = render(body.as_ref(), acceptance.limits.max_message_bytes);

    let mut dropped = origin.dropped + dropped_attributes_count as usize;
    let mut candidates = Vec::with_capacity(
        attributes.len()
            + usize::from(!event_name.is_empty())
            + scope.len()
            + origin.attributes.len(),
    );
    if !event_name.is_empty() {
        candidates.extend(Attribute::render(
            "",
            "event.name".to_owned(),
            Some(&text(event_name)),
        ));
    }
    for KeyValue { key, value, .. } in attributes {
        // No record keeps more: the rest are dropped unrendered.
        if candidates.len() >= MAX_ATTRIBUTES {
            dropped += 1;
            continue;
        }
        match Attribute::render("", key, value.as_ref()) {
            Some(attribute) => candidates.push(attribute),
            None => dropped += 1,
        }
    }
    candidates.extend(scope.iter().cloned());
    candidates.extend(origin.attributes.iter().cloned());
    let attributes = fit(candidates, message_cut, dropped);

    let time = match (time_unix_nano, observed_time_unix_nano) {
        (0, 0) => None,
        (0, nanos) | (nanos, _) => Some(timestamp(nanos)),
    };
    acceptance.accept(pb::LogRecord {
        time,
        service: origin.service.clone(),
        node: origin.node.clone(),
        level: level.to_wire() as i32,
        message,
        attributes,
        trace_id,
        span_id,
        ..pb::LogRecord::default()
    })
}

/// The attributes that fit a record, first come first kept, with the
/// gateway's own notes on what was lost (which take places too).
fn fit(
    candidates: Vec<Attribute>,
    message_cut: bool,
    mut dropped: usize,
) -> BTreeMap<String, String> {
    // A place for the note on cut values, if any may be kept.
    let mut cut = 0;
    let any_cut = candidates.iter().any(|a| a.cut);
    let mut room = MAX_ATTRIBUTES - usize::from(message_cut) - usize::from(any_cut);
    if dropped > 0 {
        room -= 1;
    }
    let mut attributes = BTreeMap::new();
    let mut candidates = candidates.into_iter();
    while let Some(Attribute {
        key,
        value,
        cut: value_cut,
    }) = candidates.next()
    {
        // Filling the last place while more are to come: one of them will
        // be dropped, and saying so needs that place.
        if dropped == 0 && attributes.len() + 1 == room && candidates.len() > 0 {
            room -= 1;
        }
        if attributes.len() >= room || attributes.contains_key(&key) {
            dropped += 1;
            continue;
        }
        cut += usize::from(value_cut);
        attributes.insert(key, value);
    }
    if message_cut {
        attributes.insert(MESSAGE_TRUNCATED.to_owned(), "true".to_owned());
    }
    if dropped > 0 {
        attributes.insert(ATTRIBUTES_DROPPED.to_owned(), dropped.to_string());
    }
    if cut > 0 {
        attributes.insert(ATTRIBUTES_TRUNCATED.to_owned(), cut.to_string());
    }
    attributes
}

/// A trace or span id's bytes as lower-case hex; none (or all zeros, which
/// OTLP defines as none) → empty.
fn id_hex(field: &str, bytes: &[u8], len: usize) -> Result<String, Invalid> {
    if bytes.iter().all(|b| *b == 0) {
        return Ok(String::new());
    }
    if bytes.len() != len {
        return Err(Invalid::new(
            field,
            format_args!("{} bytes, not {len}", bytes.len()),
        ));
    }
    Ok(hex(bytes))
}

fn timestamp(nanos: u64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: i64::try_from(nanos / 1_000_000_000).expect("u64 nanoseconds fit i64 seconds"),
        nanos: i32::try_from(nanos % 1_000_000_000).expect("below 1e9"),
    }
}

/// An AnyValue as a string of at most `limit` bytes: a string as it is,
/// anything else as JSON (bytes as base64, as protobuf's JSON has them).
/// The flag says whether it was cut.
pub fn render(value: Option<&AnyValue>, limit: usize) -> (String, bool) {
    let mut out = match value.and_then(|v| v.value.as_ref()) {
        None => return (String::new(), false),
        Some(Value::StringValue(s)) => {
            let mut s = s.clone();
            let cut = cut_at(&mut s, limit);
            return (s, cut);
        }
        Some(Value::BoolValue(b)) => return (b.to_string(), false),
        Some(Value::IntValue(i)) => return (i.to_string(), false),
        Some(Value::DoubleValue(d)) => return (double(*d), false),
        Some(_) => Json {
            out: String::new(),
            limit,
            cut: false,
        },
    };
    out.value(value, 0);
    let cut = cut_at(&mut out.out, limit) | out.cut;
    (out.out, cut)
}

/// Cuts `s` to at most `limit` bytes, on a character boundary.
fn cut_at(s: &mut String, limit: usize) -> bool {
    if s.len() <= limit {
        return false;
    }
    let mut end = limit;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
    true
}

fn double(d: f64) -> String {
    if d.is_nan() {
        "NaN".to_owned()
    } else if d.is_infinite() {
        if d > 0.0 { "Infinity" } else { "-Infinity" }.to_owned()
    } else {
        serde_json::Number::from_f64(d).map_or_else(|| d.to_string(), |n| n.to_string())
    }
}

/// JSON written until it passes `limit` bytes, then no more (the caller
/// cuts the last piece): a huge or deep value costs at most its limit.
struct Json {
    out: String,
    limit: usize,
    cut: bool,
}

impl Json {
    fn full(&mut self) -> bool {
        if self.out.len() > self.limit {
            self.cut = true;
        }
        self.cut
    }

    fn value(&mut self, value: Option<&AnyValue>, depth: usize) {
        if self.full() {
            return;
        }
        match value.and_then(|v| v.value.as_ref()) {
            // A string table index means something only in OTLP profiles.
            None | Some(Value::StringValueStrindex(_)) => self.out.push_str("null"),
            Some(Value::StringValue(s)) => self.string(s),
            Some(Value::BoolValue(b)) => self.out.push_str(if *b { "true" } else { "false" }),
            Some(Value::IntValue(i)) => self.out.push_str(&i.to_string()),
            Some(Value::DoubleValue(d)) if d.is_finite() => self.out.push_str(&double(*d)),
            Some(Value::DoubleValue(d)) => self.string(&double(*d)),
            Some(Value::BytesValue(bytes)) => {
                self.out.push('"');
                base64(bytes, &mut self.out, self.limit);
                self.out.push('"');
            }
            Some(Value::ArrayValue(_) | Value::KvlistValue(_)) if depth >= MAX_JSON_DEPTH => {
                self.cut = true;
                self.out.push_str("\"…\"");
            }
            Some(Value::ArrayValue(array)) => {
                self.out.push('[');
                for (i, item) in array.values.iter().enumerate() {
                    if self.full() {
                        return;
                    }
                    if i > 0 {
                        self.out.push(',');
                    }
                    self.value(Some(item), depth + 1);
                }
                self.out.push(']');
            }
            Some(Value::KvlistValue(list)) => {
                self.out.push('{');
                for (i, KeyValue { key, value, .. }) in list.values.iter().enumerate() {
                    if self.full() {
                        return;
                    }
                    if i > 0 {
                        self.out.push(',');
                    }
                    self.string(key);
                    self.out.push(':');
                    self.value(value.as_ref(), depth + 1);
                }
                self.out.push('}');
            }
        }
    }

    /// A JSON string, escaped, written no further than just past the limit.
    fn string(&mut self, s: &str) {
        self.out.push('"');
        for c in s.chars() {
            if self.out.len() > self.limit {
                self.cut = true;
                return;
            }
            match c {
                '"' => self.out.push_str("\\\""),
                '\\' => self.out.push_str("\\\\"),
                '\n' => self.out.push_str("\\n"),
                '\r' => self.out.push_str("\\r"),
                '\t' => self.out.push_str("\\t"),
                c if u32::from(c) < 0x20 => {
                    self.out.push_str(&format!("\\u{:04x}", u32::from(c)));
                }
                c => self.out.push(c),
            }
        }
        self.out.push('"');
    }
}

/// Standard base64 with padding, written no further than just past `limit`.
fn base64(bytes: &[u8], out: &mut String, limit: usize) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for chunk in bytes.chunks(3) {
        if out.len() > limit {
            return;
        }
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use time::OffsetDateTime;

    use super::*;
    use crate::proto::otlp::{
        common::{ArrayValue, KeyValueList},
        logs::{ResourceLogs, ScopeLogs},
        resource::Resource,
    };
    use crate::record::Limits;

    fn acceptance(limits: Limits) -> Acceptance<'static> {
        Acceptance {
            received_time: OffsetDateTime::from_unix_timestamp(1_780_000_000).expect("valid"),
            gateway: "gw-1",
            principal: "",
            traceparent: None,
            limits,
        }
    }

    fn string(s: &str) -> Option<AnyValue> {
        Some(text(s.to_owned()))
    }

    fn kv(key: &str, value: Option<AnyValue>) -> KeyValue {
        KeyValue {
            key: key.into(),
            value,
            ..KeyValue::default()
        }
    }

    fn any(value: Value) -> AnyValue {
        AnyValue { value: Some(value) }
    }

    fn request(resource: Vec<KeyValue>, records: Vec<OtlpRecord>) -> ExportLogsServiceRequest {
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: resource,
                    ..Resource::default()
                }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: "app.module".into(),
                        version: "1.2".into(),
                        ..InstrumentationScope::default()
                    }),
                    log_records: records,
                    ..ScopeLogs::default()
                }],
                ..ResourceLogs::default()
            }],
        }
    }

    fn one(resource: Vec<KeyValue>, record: OtlpRecord) -> Result<Record, Invalid> {
        one_within(Limits::default(), resource, record)
    }

    fn one_within(
        limits: Limits,
        resource: Vec<KeyValue>,
        record: OtlpRecord,
    ) -> Result<Record, Invalid> {
        let mut mapped = accept(&acceptance(limits), request(resource, vec![record]));
        match mapped.first_rejection.take() {
            Some(invalid) => Err(invalid),
            None => Ok(mapped.records.pop().expect("one record")),
        }
    }

    #[test]
    fn a_sender_cannot_forge_the_gateways_notes() {
        let record = one(
            billing(),
            OtlpRecord {
                attributes: vec![
                    kv(ATTRIBUTES_DROPPED, string("0")),
                    kv(MESSAGE_TRUNCATED, string("true")),
                    kv("kept", string("yes")),
                ],
                ..body(Value::StringValue("m".into()))
            },
        )
        .expect("accepted");
        assert_eq!(
            record.attributes.get("kept").map(String::as_str),
            Some("yes")
        );
        assert_eq!(record.attributes.get(MESSAGE_TRUNCATED), None);
        // The two forged keys are the ones dropped.
        assert_eq!(
            record
                .attributes
                .get(ATTRIBUTES_DROPPED)
                .map(String::as_str),
            Some("2")
        );
    }

    #[test]
    fn a_large_resource_costs_each_record_a_bounded_copy() {
        // 10,000 resource attributes of 1 KiB shared by 1,000 records: each
        // record gets at most what one record may hold, within 16 KiB.
        let mut resource = billing();
        resource.extend((0..10_000).map(|i| kv(&format!("k{i}"), string(&"v".repeat(1024)))));
        let records = (0..1_000)
            .map(|_| body(Value::StringValue("m".into())))
            .collect();
        let mapped = accept(&acceptance(Limits::default()), request(resource, records));
        assert_eq!(mapped.records.len(), 1_000);
        for record in &mapped.records {
            let from_resource: usize = record
                .attributes
                .iter()
                .filter(|(key, _)| key.starts_with("resource."))
                .map(|(key, value)| key.len() + value.len())
                .sum();
            assert!(
                from_resource <= RESOURCE_BYTES + 2 * 1024,
                "{from_resource}"
            );
            let dropped: usize = record.attributes[ATTRIBUTES_DROPPED]
                .parse()
                .expect("a count");
            assert!(
                dropped > 9_900,
                "the rest are counted as dropped: {dropped}"
            );
        }
    }

    fn billing() -> Vec<KeyValue> {
        vec![kv("service.name", string("billing"))]
    }

    fn body(value: Value) -> OtlpRecord {
        OtlpRecord {
            body: Some(any(value)),
            ..OtlpRecord::default()
        }
    }

    #[test]
    fn service_name_is_sanitised_to_a_routing_key_word() {
        assert_eq!(service_name(None), "unknown_service");
        assert_eq!(service_name(Some("")), "unknown_service");
        assert_eq!(
            service_name(Some("unknown_service:python3")),
            "unknown_service"
        );
        assert_eq!(service_name(Some("unknown_service")), "unknown_service");
        assert_eq!(
            service_name(Some("shop.checkout v2/é")),
            "shop_checkout_v2__"
        );
        assert_eq!(service_name(Some(&"a".repeat(100))), "a".repeat(64));
        for name in ["", "x.y", "ü", &"é".repeat(70)] {
            super::super::validate::check_service(&service_name(Some(name)))
                .expect("always a valid service");
        }
    }

    #[test]
    fn node_comes_from_host_name_then_instance_id_then_pod_name() {
        let record = one(
            vec![
                kv("k8s.pod.name", string("pod-1")),
                kv("service.instance.id", string("inst-1")),
                kv("service.name", string("billing")),
            ],
            OtlpRecord::default(),
        )
        .expect("valid");
        assert_eq!(record.node, "inst-1");
        assert_eq!(record.attributes["resource.k8s.pod.name"], "pod-1");
        assert!(!record
            .attributes
            .contains_key("resource.service.instance.id"));
        assert!(!record.attributes.contains_key("resource.service.name"));

        let record = one(
            vec![
                kv("service.instance.id", string("inst-1")),
                kv("host.name", string("host-1")),
            ],
            OtlpRecord::default(),
        )
        .expect("valid");
        assert_eq!(record.node, "host-1");
        assert_eq!(record.service, "unknown_service");
        assert_eq!(record.attributes["resource.service.instance.id"], "inst-1");

        let record = one(vec![kv("host.name", string("a\nb"))], OtlpRecord::default())
            .expect("control characters are replaced");
        assert_eq!(record.node, "a_b");
    }

    #[test]
    fn severity_number_ranges_map_to_levels() {
        for (range, level) in [
            (1..=4, Level::Trace),
            (5..=8, Level::Debug),
            (9..=12, Level::Info),
            (13..=16, Level::Warn),
            (17..=20, Level::Error),
            (21..=24, Level::Fatal),
        ] {
            for n in range {
                assert_eq!(super::level(n, "error").expect("valid"), level, "{n}");
            }
        }
        for n in [-1, 25, i32::MAX] {
            assert_eq!(
                super::level(n, "").expect_err("refused").field,
                "severity_number"
            );
        }
    }

    #[test]
    fn unspecified_severity_reads_the_text_else_info() {
        for (text, level) in [
            ("WARNING", Level::Warn),
            ("warn", Level::Warn),
            ("Error", Level::Error),
            ("CRITICAL", Level::Fatal),
            ("FATAL3", Level::Fatal),
            ("debug", Level::Debug),
            ("TRACE", Level::Trace),
            ("INFO2", Level::Info),
            ("", Level::Info),
            ("loud", Level::Info),
        ] {
            assert_eq!(super::level(0, text).expect("valid"), level, "{text:?}");
        }
    }

    #[test]
    fn a_string_body_is_the_message_and_others_are_json() {
        let json = |value| one(billing(), body(value)).expect("valid").message;
        assert_eq!(
            json(Value::StringValue("plain \"text\"".into())),
            "plain \"text\""
        );
        assert_eq!(json(Value::IntValue(-42)), "-42");
        assert_eq!(json(Value::BoolValue(true)), "true");
        assert_eq!(json(Value::DoubleValue(1.5)), "1.5");
        assert_eq!(json(Value::BytesValue(b"hello".to_vec())), "\"aGVsbG8=\"");
        assert_eq!(
            json(Value::ArrayValue(ArrayValue {
                values: vec![
                    any(Value::IntValue(1)),
                    any(Value::StringValue("two\n".into())),
                    any(Value::DoubleValue(f64::NAN)),
                    AnyValue { value: None },
                ],
            })),
            r#"[1,"two\n","NaN",null]"#
        );
        let kvlist = json(Value::KvlistValue(KeyValueList {
            values: vec![
                kv("user", string("ann")),
                kv("ok", Some(any(Value::BoolValue(false)))),
                kv(
                    "raw",
                    Some(any(Value::BytesValue(vec![0xff, 0x00, 0x10, 0x20]))),
                ),
            ],
        }));
        assert_eq!(kvlist, r#"{"user":"ann","ok":false,"raw":"/wAQIA=="}"#);
        let parsed: serde_json::Value = serde_json::from_str(&kvlist).expect("valid JSON");
        assert_eq!(parsed["user"], "ann");
        assert_eq!(
            one(billing(), OtlpRecord::default())
                .expect("valid")
                .message,
            ""
        );
    }

    #[test]
    fn base64_matches_the_standard_alphabet_and_padding() {
        for (input, expected) in [
            (&b""[..], ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg=="),
            (&[0xfb, 0xff], "+/8="),
        ] {
            let mut out = String::new();
            base64(input, &mut out, usize::MAX);
            assert_eq!(out, expected, "{input:?}");
        }
    }

    #[test]
    fn an_oversize_message_is_cut_on_a_character_and_says_so() {
        let limits = Limits {
            max_message_bytes: 10,
        };
        let record = one_within(
            limits,
            billing(),
            body(Value::StringValue("ééééééé".into())),
        )
        .expect("cut, not refused");
        assert_eq!(record.message, "ééééé");
        assert_eq!(record.attributes[MESSAGE_TRUNCATED], "true");

        let list = Value::ArrayValue(ArrayValue {
            values: (0..100).map(|i| any(Value::IntValue(i))).collect(),
        });
        let record = one_within(limits, billing(), body(list)).expect("cut");
        assert_eq!(record.message, "[0,1,2,3,4");
        assert_eq!(record.attributes[MESSAGE_TRUNCATED], "true");

        let fits =
            one_within(limits, billing(), body(Value::StringValue("short".into()))).expect("valid");
        assert!(!fits.attributes.contains_key(MESSAGE_TRUNCATED));
    }

    #[test]
    fn deep_nesting_is_rendered_to_a_bounded_depth() {
        let mut value = any(Value::IntValue(7));
        for _ in 0..200 {
            value = any(Value::ArrayValue(ArrayValue {
                values: vec![value],
            }));
        }
        let (json, cut) = render(Some(&value), 64 * 1024);
        assert!(cut);
        assert_eq!(json.matches('[').count(), MAX_JSON_DEPTH);
        serde_json::from_str::<serde_json::Value>(&json).expect("still valid JSON");
    }

    #[test]
    fn a_huge_value_costs_only_its_limit() {
        let huge = Value::ArrayValue(ArrayValue {
            values: vec![any(Value::StringValue("x".repeat(10_000_000)))],
        });
        let (json, cut) = render(Some(&any(huge)), 100);
        assert!(cut);
        assert_eq!(json.len(), 100);
        assert!(json.capacity() < 1024, "{}", json.capacity());
    }

    #[test]
    fn attributes_are_rendered_as_strings_in_order_log_then_scope_then_resource() {
        let record = one(
            vec![
                kv("service.name", string("billing")),
                kv("deployment.environment", string("prod")),
                kv("team", string("pay")),
            ],
            OtlpRecord {
                attributes: vec![
                    kv("count", Some(any(Value::IntValue(3)))),
                    kv("ratio", Some(any(Value::DoubleValue(0.25)))),
                    kv("ok", Some(any(Value::BoolValue(true)))),
                    kv(
                        "tags",
                        Some(any(Value::ArrayValue(ArrayValue {
                            values: vec![any(Value::StringValue("a".into()))],
                        }))),
                    ),
                    kv("scope.name", string("mine")),
                ],
                event_name: "order.paid".into(),
                ..OtlpRecord::default()
            },
        )
        .expect("valid");
        let expected: BTreeMap<String, String> = [
            ("count", "3"),
            ("ratio", "0.25"),
            ("ok", "true"),
            ("tags", "[\"a\"]"),
            ("scope.name", "mine"),
            ("scope.version", "1.2"),
            ("event.name", "order.paid"),
            ("resource.deployment.environment", "prod"),
            ("resource.team", "pay"),
            (ATTRIBUTES_DROPPED, "1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(record.attributes, expected, "the log's scope.name wins");
    }

    #[test]
    fn attributes_past_the_limits_are_dropped_or_cut_and_counted() {
        let many = [kv(
            "big",
            string(&"v".repeat(MAX_ATTRIBUTE_VALUE_BYTES + 5)),
        )]
        .into_iter()
        .chain((0..70).map(|i| kv(&format!("k{i:02}"), string("v"))))
        .chain([
            kv("", string("empty key")),
            kv(&"k".repeat(129), string("long key")),
        ])
        .collect();
        let record = one(
            billing(),
            OtlpRecord {
                attributes: many,
                dropped_attributes_count: 4,
                ..OtlpRecord::default()
            },
        )
        .expect("valid");
        assert_eq!(record.attributes.len(), MAX_ATTRIBUTES);
        // 62 places (two notes take the others): big and k00..k60; the
        // other 9 of the 70, 2 bad keys, scope's 2 and the sender's 4 dropped.
        assert_eq!(record.attributes["big"].len(), MAX_ATTRIBUTE_VALUE_BYTES);
        assert!(record.attributes.contains_key("k60"));
        assert!(!record.attributes.contains_key("k61"));
        assert_eq!(
            record.attributes[ATTRIBUTES_DROPPED],
            (9 + 2 + 2 + 4).to_string()
        );
        assert_eq!(record.attributes[ATTRIBUTES_TRUNCATED], "1");

        let big = one(
            billing(),
            OtlpRecord {
                attributes: vec![kv("big", string(&"é".repeat(MAX_ATTRIBUTE_VALUE_BYTES)))],
                ..OtlpRecord::default()
            },
        )
        .expect("valid");
        assert_eq!(big.attributes["big"].len(), MAX_ATTRIBUTE_VALUE_BYTES);
        assert_eq!(big.attributes[ATTRIBUTES_TRUNCATED], "1");

        // Exactly 64 fit (62 and the scope's 2), with no note needed.
        let exact = one(
            vec![],
            OtlpRecord {
                attributes: (0..62)
                    .map(|i| kv(&format!("k{i:02}"), string("v")))
                    .collect(),
                ..OtlpRecord::default()
            },
        )
        .expect("valid");
        assert_eq!(exact.attributes.len(), 64);
        assert!(!exact.attributes.contains_key(ATTRIBUTES_DROPPED));
    }

    #[test]
    fn time_is_time_unix_nano_else_observed_else_received() {
        let at = |time_unix_nano, observed_time_unix_nano| {
            one(
                billing(),
                OtlpRecord {
                    time_unix_nano,
                    observed_time_unix_nano,
                    ..OtlpRecord::default()
                },
            )
            .expect("valid")
            .time
            .unix_timestamp_nanos()
        };
        assert_eq!(at(1_700_000_000_123_456_789, 5), 1_700_000_000_123_456_789);
        assert_eq!(at(0, 1_700_000_000_000_000_001), 1_700_000_000_000_000_001);
        assert_eq!(at(0, 0), 1_780_000_000 * 1_000_000_000);
    }

    #[test]
    fn trace_and_span_ids_become_hex_and_bad_lengths_are_rejected() {
        let trace: Vec<u8> = (1..=16).collect();
        let span: Vec<u8> = (0xa1..=0xa8).collect();
        let record = one(
            billing(),
            OtlpRecord {
                trace_id: trace.clone(),
                span_id: span.clone(),
                ..OtlpRecord::default()
            },
        )
        .expect("valid");
        assert_eq!(record.trace_id, "0102030405060708090a0b0c0d0e0f10");
        assert_eq!(record.span_id, "a1a2a3a4a5a6a7a8");

        let zeros = one(
            billing(),
            OtlpRecord {
                trace_id: vec![0; 16],
                span_id: vec![0; 8],
                ..OtlpRecord::default()
            },
        )
        .expect("all zeros is no id");
        assert_eq!((zeros.trace_id.as_str(), zeros.span_id.as_str()), ("", ""));

        let short = one(
            billing(),
            OtlpRecord {
                trace_id: trace[..5].to_vec(),
                ..OtlpRecord::default()
            },
        )
        .expect_err("rejected");
        assert_eq!(
            short.to_string(),
            "resource_logs[0].scope_logs[0].log_records[0].trace_id: 5 bytes, not 16"
        );
        let lone_span = one(
            billing(),
            OtlpRecord {
                span_id: span,
                ..OtlpRecord::default()
            },
        )
        .expect_err("a span needs a trace");
        assert!(lone_span.field.ends_with("span_id"), "{lone_span}");
    }

    #[test]
    fn rejected_records_are_counted_and_the_rest_kept_in_order() {
        let bad = OtlpRecord {
            severity_number: 99,
            ..OtlpRecord::default()
        };
        let good = |m: &str| body(Value::StringValue(m.into()));
        let mapped = accept(
            &acceptance(Limits::default()),
            request(billing(), vec![good("a"), bad.clone(), good("b"), bad]),
        );
        assert_eq!(
            mapped
                .records
                .iter()
                .map(|r| r.message.as_str())
                .collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert_eq!(mapped.places[1].record, 2);
        assert_eq!(mapped.rejected, 2);
        assert_eq!(
            mapped.rejection_message(),
            "resource_logs[0].scope_logs[0].log_records[1].severity_number: \
             99 is not a SeverityNumber (0..=24) (and 1 more rejected)"
        );
        assert!(mapped
            .records
            .iter()
            .all(|r| r.service == "billing" && r.gateway == "gw-1"));
    }
}
