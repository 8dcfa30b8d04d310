"use strict";

// The sender's hot path: a sanitized record encoded once as a
// loggate.v1.LogRecord (protobuf wire format, written by hand: proto-loader's
// generic serializer costs several times more per record), and a
// LogStreamRequest made of such pre-encoded records. A retry sends the same
// bytes, so the same id. test/encode.test.js checks the output against
// proto-loader's own decoder.
//
// Field numbers (proto/loggate/v1/loggate.proto, LogRecord): 1 time
// (Timestamp: 1 seconds, 2 nanos), 2 service, 3 node, 4 level, 5 message,
// 6 attributes (map entries: 1 key, 2 value), 7 trace_id, 8 span_id, 9 id.
// LogStreamRequest: 1 seq, 2 records.

function varintSize(n) {
  let size = 1;
  while (n >= 128) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}

function writeVarint(buf, pos, n) {
  while (n >= 128) {
    buf[pos++] = (n % 128) | 128;
    n = Math.floor(n / 128);
  }
  buf[pos++] = n;
  return pos;
}

/** Bytes of a length-delimited string field (tag + length + UTF-8), 0 when empty. */
function stringFieldSize(len) {
  return len === 0 ? 0 : 1 + varintSize(len) + len;
}

function writeString(buf, pos, tag, s, len) {
  if (len === 0) return pos;
  buf[pos++] = tag;
  pos = writeVarint(buf, pos, len);
  if (len < 32 && len === s.length) {
    // Short ASCII: one byte per character, cheaper than a call into the encoder.
    for (let i = 0; i < len; i++) buf[pos + i] = s.charCodeAt(i);
  } else {
    buf.utf8Write(s, pos, len);
  }
  return pos + len;
}

function byteLength(s) {
  // Short ASCII strings are the rule; a loop beats the native call for them.
  const n = s.length;
  if (n < 64) {
    let ascii = true;
    for (let i = 0; i < n; i++) {
      if (s.charCodeAt(i) > 127) {
        ascii = false;
        break;
      }
    }
    if (ascii) return n;
  }
  return Buffer.byteLength(s, "utf8");
}

// Scratch space for one record's attributes (the encoder does not re-enter).
const KEYS = [];
const LENS = [];

/** A sanitized wire record (see record.sanitize) as LogRecord bytes. */
function encodeRecord(r) {
  const serviceLen = byteLength(r.service);
  const nodeLen = byteLength(r.node);
  const messageLen = byteLength(r.message);
  const traceLen = r.trace_id.length;
  const spanLen = r.span_id.length;
  const idLen = r.id.length;

  let timeLen = 0;
  if (r.time) {
    timeLen = (r.time.seconds ? 1 + varintSize(r.time.seconds) : 0) + (r.time.nanos ? 1 + varintSize(r.time.nanos) : 0);
  }
  let size =
    (r.time ? 1 + varintSize(timeLen) + timeLen : 0) +
    stringFieldSize(serviceLen) +
    stringFieldSize(nodeLen) +
    (r.level ? 2 : 0) +
    stringFieldSize(messageLen) +
    stringFieldSize(traceLen) +
    stringFieldSize(spanLen) +
    stringFieldSize(idLen);

  const attrs = r.attributes;
  const keys = KEYS;
  const lens = LENS;
  let n = 0;
  for (const k in attrs) {
    const v = attrs[k];
    const kl = byteLength(k);
    const vl = byteLength(v);
    const entry = 1 + varintSize(kl) + kl + (vl ? 1 + varintSize(vl) + vl : 0);
    keys[n] = k;
    lens[3 * n] = kl;
    lens[3 * n + 1] = vl;
    lens[3 * n + 2] = entry;
    n++;
    size += 1 + varintSize(entry) + entry;
  }

  const buf = Buffer.allocUnsafe(size);
  let pos = 0;
  if (r.time) {
    buf[pos++] = 0x0a;
    pos = writeVarint(buf, pos, timeLen);
    if (r.time.seconds) {
      buf[pos++] = 0x08;
      pos = writeVarint(buf, pos, r.time.seconds);
    }
    if (r.time.nanos) {
      buf[pos++] = 0x10;
      pos = writeVarint(buf, pos, r.time.nanos);
    }
  }
  pos = writeString(buf, pos, 0x12, r.service, serviceLen);
  pos = writeString(buf, pos, 0x1a, r.node, nodeLen);
  if (r.level) {
    buf[pos++] = 0x20;
    buf[pos++] = r.level; // 1..6
  }
  pos = writeString(buf, pos, 0x2a, r.message, messageLen);
  for (let i = 0; i < n; i++) {
    const k = keys[i];
    const kl = lens[3 * i];
    const vl = lens[3 * i + 1];
    buf[pos++] = 0x32;
    pos = writeVarint(buf, pos, lens[3 * i + 2]);
    pos = writeString(buf, pos, 0x0a, k, kl);
    pos = writeString(buf, pos, 0x12, attrs[k], vl);
  }
  pos = writeString(buf, pos, 0x3a, r.trace_id, traceLen);
  pos = writeString(buf, pos, 0x42, r.span_id, spanLen);
  pos = writeString(buf, pos, 0x4a, r.id, idLen);
  keys.fill(undefined, 0, n); // hold no strings past the call
  if (pos !== size) throw new Error(`loggate: encoded ${pos} bytes, expected ${size}`);
  return buf;
}

/** A LogStreamRequest of pre-encoded records: { seq, records: Buffer[] } → Buffer. */
function encodeStreamRequest(request) {
  const { seq, records } = request;
  let size = seq ? 1 + varintSize(seq) : 0;
  for (const b of records) size += 1 + varintSize(b.length) + b.length;
  const buf = Buffer.allocUnsafe(size);
  let pos = 0;
  if (seq) {
    buf[pos++] = 0x08;
    pos = writeVarint(buf, pos, seq);
  }
  for (const b of records) {
    buf[pos++] = 0x12;
    pos = writeVarint(buf, pos, b.length);
    pos += b.copy(buf, pos);
  }
  return buf;
}

module.exports = { encodeRecord, encodeStreamRequest };
