"use strict";

// The sender's hand-written LogRecord / LogStreamRequest encoder, checked
// against proto-loader's decoder of the shipped proto (no gateway needed).

const test = require("node:test");
const assert = require("node:assert/strict");
const path = require("node:path");
const protoLoader = require("@grpc/proto-loader");
const grpc = require("@grpc/grpc-js");

const pkg = path.dirname(require.resolve("loggate/package.json"));
const { encodeRecord, encodeStreamRequest } = require(path.join(pkg, "lib", "encode.js"));
const { sanitize } = require(path.join(pkg, "lib", "record.js"));

const definition = protoLoader.loadSync("loggate/v1/loggate.proto", {
  includeDirs: [path.join(pkg, "proto")],
  keepCase: true,
  longs: Number,
  enums: Number,
  defaults: true,
});
const LogStream = grpc.loadPackageDefinition(definition).loggate.v1.LogGateway.service.LogStream;

test("pre-encoded records decode to what was sanitized", () => {
  const inputs = [
    { message: "plain", attributes: { a: "b" } },
    { message: "", service: "s", node: "", level: "fatal", time: 0 },
    {
      message: "ünïcødé ✓ 𝄞 and a lone \ud800 surrogate",
      node: "nœud",
      attributes: { ключ: "значение", emoji: "🎉", empty: "", long: "x".repeat(20000) },
      traceId: "4bf92f3577b34da6a3ce929d0e0e4736",
      spanId: "00f067aa0ba902b7",
      id: "my-id",
      time: new Date("2031-05-06T07:08:09.123Z"),
    },
    {
      message: "m".repeat(70000),
      attributes: Object.fromEntries(Array.from({ length: 80 }, (_, i) => [`k${i}`, "v".repeat(i * 3)])),
    },
  ];
  const wires = inputs.map((r) => sanitize(r, { service: "svc", node: "host" }));
  const bufs = wires.map(encodeRecord);
  const request = encodeStreamRequest({ seq: 2 ** 40 + 7, records: bufs });
  const decoded = LogStream.requestDeserialize(request);
  assert.equal(decoded.seq, 2 ** 40 + 7);
  assert.equal(decoded.records.length, wires.length);
  decoded.records.forEach((got, i) => {
    const want = wires[i];
    assert.equal(got.service, want.service);
    assert.equal(got.node, want.node);
    assert.equal(got.level, want.level);
    assert.equal(got.message, want.message.replace(/\ud800/g, "\ufffd"));
    assert.deepEqual({ ...got.attributes }, { ...want.attributes });
    assert.equal(got.trace_id, want.trace_id);
    assert.equal(got.span_id, want.span_id);
    assert.equal(got.id, want.id);
    assert.equal(Number(got.time?.seconds ?? 0), want.time.seconds);
    assert.equal(Number(got.time?.nanos ?? 0), want.time.nanos);
  });
});

test("a cut value that is then dropped to make room for the notes is not counted as cut", () => {
  const attributes = {};
  for (let i = 0; i < 63; i++) attributes[`k${i}`] = "v";
  attributes.long = "x".repeat(9000);
  const wire = sanitize({ service: "svc", message: "m".repeat(70000), attributes }, { service: "svc", node: "host" });
  assert.equal(Object.keys(wire.attributes).length, 64);
  assert.equal(wire.attributes["loggate.message_truncated"], "true");
  assert.equal(wire.attributes["loggate.attributes_dropped"], "2");
  assert.equal(wire.attributes["loggate.attributes_truncated"], undefined);
  assert.equal(wire.attributes.long, undefined);
});
