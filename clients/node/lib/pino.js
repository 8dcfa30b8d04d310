"use strict";

// The pino transport: `pino.transport({ target: 'loggate/pino', options })`.
// pino runs it in a worker thread; each line pino writes becomes a record
// handed to a Sender (batched over LogStream, retried with the same ids).
// Closing the transport (transport.end(), or pino's own end at exit) waits
// for the sender to deliver what it holds, within closeTimeout (default 5 s;
// pino gives a worker 10 s at exit).
//
// Mapping (README "pino"): level → level (10 trace, 20 debug, 30 info,
// 40 warn, 50 error, 60 fatal; custom levels by their name, else by the
// nearest standard number below), msg → message, time → time, hostname →
// node (unless options.node), name → the `logger` attribute, err →
// exception.type / exception.message / exception.stacktrace (other
// properties of the error as exception.<key>), trace_id / span_id (as
// OpenTelemetry's pino instrumentation adds them) → the trace fields,
// trace_flags dropped, pid and every other field → a string attribute
// (objects as JSON).

const { workerData } = require("node:worker_threads");
const build = require("pino-abstract-transport");
const { Sender } = require("./sender");
const { attributeText } = require("./record");

const PINO_LEVELS = [
  [60, "fatal"],
  [50, "error"],
  [40, "warn"],
  [30, "info"],
  [20, "debug"],
  [10, "trace"],
];
const KNOWN = new Set(["trace", "debug", "info", "warn", "error", "fatal"]);

/** A pino level number (or label) as a loggate level name. */
function pinoLevel(level, labels) {
  if (typeof level === "string") return level;
  if (typeof level !== "number") return "info";
  const label = labels && labels[level];
  if (label && KNOWN.has(label)) return label;
  for (const [n, name] of PINO_LEVELS) if (level >= n) return name;
  return "trace";
}

/**
 * The mapping of one pino log object to a record (exported for tests and
 * for use without a worker).
 */
function fromPino(obj, opts = {}) {
  const messageKey = opts.messageKey || "msg";
  const errorKey = opts.errorKey || "err";
  const attributes = Object.create(null);
  const record = {
    level: pinoLevel(obj.level, opts.levelLabels),
    message: "",
    attributes,
  };
  for (const key of Object.keys(obj)) {
    const value = obj[key];
    switch (key) {
      case "level":
        break;
      case "time":
        record.time = value;
        break;
      case "hostname":
        if (!opts.node) record.node = value;
        else attributes.hostname = attributeText(value);
        break;
      case "name":
        attributes.logger = attributeText(value);
        break;
      case "trace_id":
        record.traceId = typeof value === "string" ? value : "";
        break;
      case "span_id":
        record.spanId = typeof value === "string" ? value : "";
        break;
      case "trace_flags":
        break;
      default:
        if (key === messageKey) {
          record.message = typeof value === "string" ? value : (attributeText(value) ?? "");
        } else if (key === errorKey && value && typeof value === "object") {
          exceptionAttributes(value, attributes);
        } else {
          const text = attributeText(value);
          if (text !== undefined) attributes[key] = text;
        }
    }
  }
  return record;
}

/** pino's serialized error ({ type, message, stack, …}) as OpenTelemetry's exception.* attributes. */
function exceptionAttributes(err, attributes) {
  for (const key of Object.keys(err)) {
    const text = attributeText(err[key]);
    if (text === undefined) continue;
    if (key === "type") attributes["exception.type"] = text;
    else if (key === "message") attributes["exception.message"] = text;
    else if (key === "stack") attributes["exception.stacktrace"] = text;
    else attributes[`exception.${key}`] = text;
  }
}

/** The transport: what pino's worker calls with `options`. */
async function loggateTransport(options = {}) {
  if (!options.service) throw new TypeError("loggate/pino: options.service is required");
  const sender = new Sender(options);
  let loop = Promise.resolve();
  const expectPinoConfig = workerData?.workerData?.pinoWillSendConfig === true;
  return build(
    (source) => {
      loop = (async () => {
        const opts = {
          node: options.node,
          messageKey: source.messageKey || options.messageKey,
          errorKey: source.errorKey || options.errorKey,
          levelLabels: source.levels?.labels,
        };
        for await (const obj of source) {
          try {
            sender.send(fromPino(obj, opts));
          } catch {
            // a record we could not map: not worth a crash
          }
        }
      })();
      return loop;
    },
    {
      expectPinoConfig,
      async close() {
        await loop.catch(() => {});
        await sender.close();
      },
    },
  );
}

module.exports = loggateTransport;
module.exports.default = loggateTransport;
module.exports.fromPino = fromPino;
module.exports.pinoLevel = pinoLevel;
