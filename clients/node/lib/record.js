"use strict";

// Records between the public API (camelCase, Dates, level names) and the
// wire (loggate.v1.LogRecord as proto-loader takes it), and the sender's
// sanitizer, which makes any record one the gateway accepts: what is too
// long is cut, what is invalid is dropped, and the cuts are noted in the
// same `loggate.*` attributes the gateway's own OTLP mapping uses.

const crypto = require("node:crypto");

/** The gateway's fixed limits (README, "The gRPC API"). */
const LIMITS = Object.freeze({
  maxMessageBytes: 64 * 1024, // the gateway's default --max-message-bytes
  maxAttributes: 64,
  maxAttributeKeyChars: 128,
  maxAttributeValueBytes: 8 * 1024,
  maxServiceChars: 64,
  maxNodeChars: 128,
  maxIdChars: 64,
});

const MESSAGE_TRUNCATED = "loggate.message_truncated";
const ATTRIBUTES_DROPPED = "loggate.attributes_dropped";
const ATTRIBUTES_TRUNCATED = "loggate.attributes_truncated";
const UNKNOWN_SERVICE = "unknown_service";

// ---------------------------------------------------------------- levels

const LEVEL_NUMBERS = Object.freeze({
  trace: 1,
  debug: 2,
  info: 3,
  warn: 4,
  error: 5,
  fatal: 6,
});
const LEVEL_NAMES = ["info", "trace", "debug", "info", "warn", "error", "fatal"];
const WIRE_LEVELS = [
  "LEVEL_UNSPECIFIED",
  "LEVEL_TRACE",
  "LEVEL_DEBUG",
  "LEVEL_INFO",
  "LEVEL_WARN",
  "LEVEL_ERROR",
  "LEVEL_FATAL",
];

// Other loggers' words for the six levels.
const LEVEL_ALIASES = Object.freeze({
  silly: 1,
  verbose: 2,
  http: 3,
  notice: 3,
  information: 3,
  informational: 3,
  warning: 4,
  err: 5,
  critical: 6,
  crit: 6,
  alert: 6,
  emerg: 6,
  emergency: 6,
  panic: 6,
});

/**
 * A level (a name like "warn", "WARNING" or "LEVEL_WARN", or a number 0..6)
 * as the wire's enum number; anything else is INFO (3).
 */
function levelNumber(level) {
  if (typeof level === "number") {
    return Number.isInteger(level) && level >= 1 && level <= 6 ? level : 3;
  }
  if (typeof level !== "string") return 3;
  let name = level.toLowerCase();
  if (name.startsWith("level_")) name = name.slice(6);
  return LEVEL_NUMBERS[name] || LEVEL_ALIASES[name] || 3;
}

/** A wire level (enum name or number) as its lower-case name. */
function levelName(wire) {
  const n = typeof wire === "number" ? wire : WIRE_LEVELS.indexOf(wire);
  return LEVEL_NAMES[n] || "info";
}

// ---------------------------------------------------------------- time

const MAX_TIME_MS = Date.UTC(9999, 11, 31, 23, 59, 59, 999);

/** A Date, epoch milliseconds, an ISO string or {seconds, nanos} as a Timestamp, or null. */
function timestamp(value) {
  if (value === undefined || value === null) return null;
  if (typeof value === "object" && !(value instanceof Date) && "seconds" in value) {
    const seconds = Number(value.seconds);
    const nanos = Number(value.nanos || 0);
    if (!Number.isFinite(seconds) || seconds < 0 || seconds * 1000 > MAX_TIME_MS) return null;
    if (!Number.isInteger(nanos) || nanos < 0 || nanos >= 1e9) return null;
    return { seconds: Math.floor(seconds), nanos };
  }
  const ms = value instanceof Date ? value.getTime() : typeof value === "string" ? Date.parse(value) : Number(value);
  if (!Number.isFinite(ms) || ms < 0 || ms > MAX_TIME_MS) return null;
  const seconds = Math.floor(ms / 1000);
  return { seconds, nanos: Math.round((ms - seconds * 1000) * 1e6) % 1e9 };
}

function dateOf(ts) {
  if (!ts) return null;
  return new Date(Number(ts.seconds) * 1000 + Math.floor(Number(ts.nanos || 0) / 1e6));
}

/** A duration (milliseconds, or a string like "90s", "5m", "2h", "1d", "250ms") as a Duration. */
function duration(value) {
  let ms;
  if (typeof value === "number") ms = value;
  else if (typeof value === "string") {
    const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$/.exec(value);
    if (!m)
      throw new TypeError(`not a duration: ${JSON.stringify(value)} (say "90s", "5m", "2h", "1d" or a number of ms)`);
    const unit = { ms: 1, s: 1e3, m: 60e3, h: 3600e3, d: 86400e3 }[m[2] || "ms"];
    ms = Number(m[1]) * unit;
  } else if (value && typeof value === "object" && "seconds" in value) {
    return { seconds: Number(value.seconds), nanos: Number(value.nanos || 0) };
  } else throw new TypeError('since: a number of milliseconds or a string like "5m"');
  if (!Number.isFinite(ms) || ms < 0) throw new TypeError("since: must be a non-negative duration");
  const seconds = Math.floor(ms / 1000);
  return { seconds, nanos: Math.round((ms - seconds * 1000) * 1e6) };
}

// ---------------------------------------------------------------- ids

const POOL = Buffer.alloc(16 * 512);
let poolAt = POOL.length;

/** A UUIDv7, like the ids the gateway assigns: time-ordered, 74 random bits. */
function newId() {
  if (poolAt === POOL.length) {
    crypto.randomFillSync(POOL);
    poolAt = 0;
  }
  const b = POOL.subarray(poolAt, poolAt + 16);
  poolAt += 16;
  const ms = Date.now();
  b.writeUIntBE(ms, 0, 6);
  b[6] = (b[6] & 0x0f) | 0x70;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = b.toString("hex");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

const PRINTABLE_ASCII = /^[\x20-\x7e]{1,64}$/;
function isValidId(id) {
  return typeof id === "string" && PRINTABLE_ASCII.test(id);
}

// ---------------------------------------------------------------- strings

/** Characters (code points) in a string. */
function codePoints(s) {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) i++;
    }
    n++;
  }
  return n;
}

/** The first `max` code points of `s`. */
function firstCodePoints(s, max) {
  if (s.length <= max) return s;
  let n = 0;
  let i = 0;
  while (i < s.length && n < max) {
    const c = s.charCodeAt(i);
    i += c >= 0xd800 && c <= 0xdbff && i + 1 < s.length ? 2 : 1;
    n++;
  }
  return s.slice(0, i);
}

/** `s` cut to at most `max` bytes of UTF-8, at a character boundary; null when it fits. */
function cutUtf8(s, max) {
  if (s.length * 3 <= max) return null; // fast path: cannot be over
  const buf = Buffer.from(s, "utf8");
  if (buf.length <= max) return null;
  let end = max;
  while (end > 0 && (buf[end] & 0xc0) === 0x80) end--; // back to a lead byte
  return buf.toString("utf8", 0, end);
}

const CONTROL = /[\u0000-\u001f\u007f-\u009f]/g;
const NOT_SERVICE = /[^A-Za-z0-9_-]/g;
const SERVICE = /^[A-Za-z0-9_-]{1,64}$/;

/** A routing-key word: any character outside [A-Za-z0-9_-] → "_", cut at 64; "" → "". */
function serviceName(raw) {
  if (raw === undefined || raw === null) return "";
  const s = String(raw);
  if (SERVICE.test(s)) return s;
  return firstCodePoints(s, LIMITS.maxServiceChars)
    .replace(/[\ud800-\udbff][\udc00-\udfff]/g, "_")
    .replace(NOT_SERVICE, "_");
}

function isValidService(s) {
  return typeof s === "string" && SERVICE.test(s);
}

/** A node name the gateway takes: control characters → "_", cut at 128 characters. */
function nodeName(raw) {
  if (raw === undefined || raw === null) return "";
  return firstCodePoints(String(raw), LIMITS.maxNodeChars).replace(CONTROL, "_");
}

/** Any value as an attribute's string: strings as they are, objects as JSON. */
function attributeText(value) {
  switch (typeof value) {
    case "string":
      return value;
    case "number":
    case "boolean":
    case "bigint":
      return String(value);
    case "undefined":
    case "function":
    case "symbol":
      return undefined;
    default:
      if (value === null) return "null";
      if (value instanceof Date) return Number.isNaN(value.getTime()) ? "Invalid Date" : value.toISOString();
      if (value instanceof Error) return value.stack || String(value);
      if (Buffer.isBuffer(value)) return value.toString("base64");
      try {
        const json = JSON.stringify(value, jsonReplacer());
        return json === undefined ? undefined : json;
      } catch {
        return String(value);
      }
  }
}

function jsonReplacer() {
  const seen = new WeakSet();
  return (key, v) => {
    if (typeof v === "bigint") return String(v);
    if (v instanceof Error) return { type: v.name, message: v.message, stack: v.stack };
    if (v && typeof v === "object") {
      if (seen.has(v)) return "[Circular]";
      seen.add(v);
    }
    return v;
  };
}

const TRACE_ID = /^[0-9a-f]{32}$/;
const SPAN_ID = /^[0-9a-f]{16}$/;
const ZEROS = /^0+$/;

function traceId(raw) {
  if (typeof raw !== "string" || raw === "") return "";
  const s = raw.toLowerCase();
  return TRACE_ID.test(s) && !ZEROS.test(s) ? s : "";
}

function spanId(raw) {
  if (typeof raw !== "string" || raw === "") return "";
  const s = raw.toLowerCase();
  return SPAN_ID.test(s) && !ZEROS.test(s) ? s : "";
}

// ---------------------------------------------------------------- records

function attributeEntries(attributes) {
  if (!attributes) return [];
  if (attributes instanceof Map) return attributes.entries();
  if (typeof attributes !== "object") return [];
  return Object.entries(attributes);
}

/**
 * A record as the wire takes it, unchanged but for types (level names,
 * Dates, non-string attribute values): what `log` and `logBatch` send, so
 * that the gateway judges it and a broken rule comes back as an error.
 */
function toWire(record) {
  if (!record || typeof record !== "object") throw new TypeError("a record must be an object");
  const attributes = Object.create(null);
  for (const [k, v] of attributeEntries(record.attributes)) {
    const text = attributeText(v);
    if (text !== undefined) attributes[k] = text;
  }
  const time = record.time === undefined || record.time === null ? null : timestamp(record.time);
  if (record.time !== undefined && record.time !== null && time === null) {
    throw new TypeError(`record.time: not a time between 1970 and 9999: ${String(record.time)}`);
  }
  return {
    id: record.id === undefined || record.id === null ? "" : String(record.id),
    time,
    service: record.service === undefined ? "" : String(record.service),
    node: record.node === undefined || record.node === null ? "" : String(record.node),
    level: levelNumber(record.level),
    message: record.message === undefined || record.message === null ? "" : String(record.message),
    attributes,
    trace_id: String(record.traceId ?? record.trace_id ?? ""),
    span_id: String(record.spanId ?? record.span_id ?? ""),
  };
}

/**
 * A record the gateway will accept whatever it held: the sender's path, where
 * one bad record must never make a batch fail. `defaults` gives service and
 * node; the time is now when unset (a record queued while no gateway answers
 * keeps the time it was logged at); the id is kept when valid, else a new
 * UUIDv7, so a retry of the record sends the same id.
 */
function sanitize(record, defaults, maxMessageBytes = LIMITS.maxMessageBytes) {
  let service = serviceName(record.service);
  if (service === "") service = defaults.service || UNKNOWN_SERVICE;
  const node = record.node === undefined || record.node === null ? defaults.node : nodeName(record.node);

  let message = record.message;
  if (typeof message !== "string")
    message = message === undefined || message === null ? "" : (attributeText(message) ?? "");
  let messageCut = false;
  const cutMessage = cutUtf8(message, maxMessageBytes);
  if (cutMessage !== null) {
    message = cutMessage;
    messageCut = true;
  }

  const state = {
    attributes: Object.create(null),
    count: 0,
    dropped: 0,
    truncated: 0,
    cutKeys: new Set(),
  };
  const source = record.attributes;
  if (source instanceof Map) {
    for (const [key, value] of source) addAttribute(state, key, value);
  } else if (source && typeof source === "object") {
    for (const key in source) if (hasOwn.call(source, key)) addAttribute(state, key, source[key]);
  }
  const attributes = state.attributes;
  let { count, dropped, truncated } = state;
  // The notes take slots too: make room for them within the 64.
  for (;;) {
    const notes = (messageCut ? 1 : 0) + (dropped ? 1 : 0) + (truncated ? 1 : 0);
    if (count + notes <= LIMITS.maxAttributes) break;
    const last = Object.keys(attributes).pop();
    delete attributes[last];
    count--;
    dropped++;
    // A cut value that is then dropped is counted once, as dropped.
    if (state.cutKeys.has(last)) truncated--;
  }
  if (messageCut) attributes[MESSAGE_TRUNCATED] = "true";
  if (dropped) attributes[ATTRIBUTES_DROPPED] = String(dropped);
  if (truncated) attributes[ATTRIBUTES_TRUNCATED] = String(truncated);

  const trace = traceId(record.traceId ?? record.trace_id);
  const span = trace ? spanId(record.spanId ?? record.span_id) : "";
  const id = isValidId(record.id) ? record.id : newId();
  let time = record.time === undefined || record.time === null ? null : timestamp(record.time);
  if (time === null) time = timestamp(Date.now());

  return {
    id,
    time,
    service,
    node,
    level: levelNumber(record.level),
    message,
    attributes,
    trace_id: trace,
    span_id: span,
  };
}

const hasOwn = Object.prototype.hasOwnProperty;

/** One attribute into a sanitized record's: stringified, checked, cut, or dropped and counted. */
function addAttribute(state, rawKey, rawValue) {
  let value = attributeText(rawValue);
  if (value === undefined) return;
  const key = typeof rawKey === "string" ? rawKey : String(rawKey);
  if (key === "" || (key.length > LIMITS.maxAttributeKeyChars && codePoints(key) > LIMITS.maxAttributeKeyChars)) {
    state.dropped++;
    return;
  }
  if (state.count >= LIMITS.maxAttributes || key in state.attributes) {
    state.dropped++;
    return;
  }
  const cut = cutUtf8(value, LIMITS.maxAttributeValueBytes);
  if (cut !== null) {
    value = cut;
    state.truncated++;
    state.cutKeys.add(key);
  }
  state.attributes[key] = value;
  state.count++;
}

/** A wire record (from Tail) in the public shape. */
function fromWire(wire) {
  return {
    id: wire.id,
    time: dateOf(wire.time),
    receivedTime: dateOf(wire.received_time),
    service: wire.service,
    node: wire.node,
    level: levelName(wire.level),
    message: wire.message,
    attributes: { ...wire.attributes },
    traceId: wire.trace_id,
    spanId: wire.span_id,
    gateway: wire.gateway,
    principal: wire.principal,
  };
}

module.exports = {
  LIMITS,
  MESSAGE_TRUNCATED,
  ATTRIBUTES_DROPPED,
  ATTRIBUTES_TRUNCATED,
  LEVEL_NUMBERS,
  levelNumber,
  levelName,
  timestamp,
  duration,
  newId,
  isValidId,
  isValidService,
  serviceName,
  nodeName,
  attributeText,
  cutUtf8,
  sanitize,
  toWire,
  fromWire,
};
