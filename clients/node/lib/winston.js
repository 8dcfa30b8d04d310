"use strict";

// The winston transport: `new LoggateTransport({ service, target })`.
// log() hands the record to a Sender and calls back at once: the logger never
// waits for the network. logger.close() (which unpipes the transport) and
// logger.end() (which waits for the transport's 'finish') deliver what is
// queued, within closeTimeout.
//
// Levels (README "winston"): error → ERROR; warn, warning → WARN; info, http,
// notice → INFO; verbose, debug → DEBUG; silly → TRACE; emerg, alert, crit
// → FATAL; trace and fatal as they are; anything else → INFO, unless
// options.levels maps it. Meta: `timestamp` (format.timestamp()) → time,
// `stack` (format.errors({ stack: true })) → exception.stacktrace (and
// exception.type), an Error in a meta field → exception.type /
// exception.message / exception.stacktrace, trace_id / span_id → the trace
// fields (trace_flags dropped), every other field → a string attribute
// (objects as JSON).

const Transport = require("winston-transport");
const { Sender } = require("./sender");
const { attributeText } = require("./record");

const LEVEL = Symbol.for("level");
const ANSI = /\u001b\[[0-9;]*m/g;

/** A winston info object as a record (exported for tests). */
function fromWinston(info, opts = {}) {
  const attributes = Object.create(null);
  let raw = info[LEVEL] ?? info.level;
  if (typeof raw === "string") raw = raw.replace(ANSI, "");
  const record = {
    level: (opts.levels && opts.levels[raw]) || raw,
    message: typeof info.message === "string" ? info.message : (attributeText(info.message) ?? ""),
    attributes,
  };
  for (const key of Object.keys(info)) {
    const value = info[key];
    switch (key) {
      case "level":
      case "message":
        break;
      case "timestamp": {
        const ms = value instanceof Date ? value.getTime() : typeof value === "number" ? value : Date.parse(value);
        if (Number.isFinite(ms)) record.time = ms;
        else attributes.timestamp = attributeText(value);
        break;
      }
      case "stack":
        if (typeof value === "string") {
          attributes["exception.stacktrace"] = value;
          const m = /^([A-Za-z_$][\w$.]*):/.exec(value);
          if (m && !attributes["exception.type"]) attributes["exception.type"] = m[1];
        }
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
        if (value instanceof Error) {
          attributes["exception.type"] = value.name || "Error";
          attributes["exception.message"] = value.message;
          if (value.stack) attributes["exception.stacktrace"] = value.stack;
        } else {
          const text = attributeText(value);
          if (text !== undefined) attributes[key] = text;
        }
    }
  }
  return record;
}

class LoggateTransport extends Transport {
  /**
   * @param {object} options  service (required), target, token, tls, node,
   *   the Sender's options, and winston's (level, format, silent, handleExceptions)
   */
  constructor(options = {}) {
    if (!options.service) throw new TypeError("loggate/winston: options.service is required");
    super(options);
    this.name = options.name || "loggate";
    this._levels = options.levels;
    this.sender = new Sender(options);
  }

  log(info, callback) {
    try {
      this.sender.send(fromWinston(info, { levels: this._levels }));
    } catch {
      // never into the application
    }
    callback();
  }

  /** Delivers what is queued now; resolves true when all of it was delivered in time. */
  flush(timeout) {
    return this.sender.flush(timeout);
  }

  /** Stops and delivers what is queued (called by logger.close()); resolves with the stats. */
  close(timeout) {
    return this.sender.close(timeout);
  }

  /** The sender's counters: sent, dropped, retried, failed, queued. */
  stats() {
    return this.sender.stats();
  }

  // logger.end() waits for each transport's 'finish': hold it until delivered.
  _final(callback) {
    this.sender.close().then(
      () => callback(),
      () => callback(),
    );
  }
}

module.exports = { LoggateTransport, fromWinston };
module.exports.default = LoggateTransport;
