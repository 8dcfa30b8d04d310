"use strict";

// createClient: the promise API (log, logBatch), the resuming tail, and the
// factory of background senders that share this client's channels.

const grpc = require("@grpc/grpc-js");
const { Pool } = require("./connection");
const { toWire, fromWire, newId, timestamp, duration, levelNumber } = require("./record");
const { Sender } = require("./sender");

const { status } = grpc;

// Codes after which a tail is opened again (on the next gateway), from its
// last resume token. Anything else ends it with that error.
const TAIL_RETRY = new Set([
  status.UNAVAILABLE,
  status.DEADLINE_EXCEEDED,
  status.RESOURCE_EXHAUSTED,
  status.ABORTED,
  status.INTERNAL, // a broken HTTP/2 stream, as grpc-js reports some of them
  status.UNKNOWN,
]);

class Client {
  /**
   * @param {object} options  see index.d.ts (ClientOptions)
   */
  constructor(options = {}) {
    this._options = options;
    this._pool = new Pool(options);
    this._timeout = options.timeout ?? 30000;
    this._senders = new Set();
    this._tails = new Set();
  }

  /** The gateways, in the order they are tried from the current one. */
  get targets() {
    return this._pool.targets.map((t) => t.address);
  }

  /**
   * Publishes one record; resolves once RabbitMQ confirmed it (or the
   * gateway spooled it) with { id, spooled }. A record without an id gets a
   * UUIDv7 here, so the call can be retried on the next gateway (after
   * UNAVAILABLE) without a second id.
   */
  log(record, options = {}) {
    let wire;
    try {
      wire = withId(toWire(record));
    } catch (err) {
      return Promise.reject(err);
    }
    return this._unary("Log", { record: wire }, options).then((r) => ({ id: r.id, spooled: r.spooled }));
  }

  /** Publishes records in order; resolves with { ids, spooled } once all are confirmed. */
  logBatch(records, options = {}) {
    let wire;
    try {
      if (!Array.isArray(records)) throw new TypeError("logBatch takes an array of records");
      wire = records.map((r) => withId(toWire(r)));
    } catch (err) {
      return Promise.reject(err);
    }
    return this._unary("LogBatch", { records: wire }, options).then((r) => ({
      ids: r.ids,
      spooled: r.spooled,
    }));
  }

  /**
   * Follows records: an async iterable of records, each with its
   * resumeToken. On UNAVAILABLE, a broken connection or a silent one it opens
   * the tail again, on the next gateway when there are several, right after
   * the last record it received: no gap, no duplicate.
   */
  tail(filters = {}, options = {}) {
    const tail = new Tail(this, filters, options);
    this._tails.add(tail);
    return tail;
  }

  /** A background sender on this client's channels (see Sender). */
  createSender(options = {}) {
    const sender = new Sender({ ...this._options, ...options, client: this });
    this._senders.add(sender);
    sender._onClosed = () => this._senders.delete(sender);
    return sender;
  }

  /** Delivers what this client's senders hold (within `timeout` ms), ends tails, closes the channels. */
  async close(timeout) {
    await Promise.all([...this._senders].map((s) => s.close(timeout)));
    for (const t of this._tails) t.cancel();
    this._pool.close();
  }

  _unary(method, request, options) {
    const timeout = options.timeout ?? this._timeout;
    const deadline = Date.now() + timeout;
    const pool = this._pool;
    return new Promise((resolve, reject) => {
      let attempts = 0;
      const attempt = () => {
        if (pool.closed) return reject(new Error("loggate: the client is closed"));
        const target = pool.pick();
        attempts++;
        target.stub[method](request, pool.metadata(), { deadline }, (err, response) => {
          if (!err) return resolve(response);
          // Not there (or its broker is not): the same request, same ids, on the next gateway.
          if (err.code === status.UNAVAILABLE && attempts < pool.size && Date.now() < deadline) {
            pool.failed(target);
            return attempt();
          }
          if (err.code === status.UNAVAILABLE) pool.failed(target);
          err.target = target.address;
          reject(err);
        });
      };
      attempt();
    });
  }
}

/** The record with a client-made id when it has none (an invalid one is the gateway's to refuse). */
function withId(wire) {
  if (!wire.id) wire.id = newId();
  return wire;
}

/** The TailRequest for `filters` (public names; see index.d.ts TailFilters). */
function tailRequest(filters) {
  const f = filters || {};
  const request = {
    services: asList(f.services ?? f.service),
    min_level: f.minLevel === undefined || f.minLevel === null ? 0 : levelNumber(f.minLevel),
    nodes: asList(f.nodes ?? f.node),
    trace_id: f.traceId ? String(f.traceId) : "",
    attributes: f.attributes ? Object.fromEntries(Object.entries(f.attributes).map(([k, v]) => [k, String(v)])) : {},
    contains: f.contains ? String(f.contains) : "",
    history_only: Boolean(f.historyOnly),
    limit: f.limit ? Number(f.limit) : 0,
  };
  const starts = ["since", "startTime", "resumeToken", "fromBeginning"].filter(
    (k) => f[k] !== undefined && f[k] !== null && f[k] !== false,
  );
  if (starts.length > 1) throw new TypeError(`tail: choose one start, not ${starts.join(" and ")}`);
  if (f.since !== undefined && f.since !== null) request.since = duration(f.since);
  else if (f.startTime !== undefined && f.startTime !== null) {
    request.start_time = timestamp(f.startTime);
    if (!request.start_time) throw new TypeError("tail: startTime is not a time");
  } else if (f.resumeToken) request.resume_token = String(f.resumeToken);
  else if (f.fromBeginning) request.from_beginning = true;
  return request;
}

function durationMs(d) {
  return Number(d.seconds) * 1000 + Math.floor(Number(d.nanos || 0) / 1e6);
}

function asList(v) {
  if (v === undefined || v === null) return [];
  return (Array.isArray(v) ? v : [v]).map(String);
}

/**
 * A resuming tail. Async-iterable (records, each with resumeToken);
 * `resumeToken` is the last one received, `target` the gateway it reads
 * from now, `cancel()` ends it.
 */
class Tail {
  constructor(client, filters, options) {
    this._client = client;
    this._pool = client._pool;
    this._request = tailRequest(filters); // throws on a bad filter, before any call
    this._limit = this._request.limit;
    this._received = 0;
    this._options = options;
    this._idleTimeout = options.idleTimeout ?? 60000;
    this._backoffInitial = options.backoff?.initial ?? 100;
    this._backoffMax = options.backoff?.max ?? 5000;
    this._failures = 0;
    this._buffer = [];
    this._highWater = options.highWaterMark ?? 256;
    this._waiters = []; // pending next() calls, oldest first
    this._done = false;
    this._error = null;
    this._call = null;
    this._target = null;
    this._paused = false;
    this._idleTimer = null;
    this._retryTimer = null;
    this.resumeToken = this._request.resume_token || null;
    this._opened = false;
    this._startedAt = null;
    this._headTime = null; // the gateway's head when no record has matched yet
    this._open();
  }

  /** The gateway this tail reads from now. */
  get target() {
    return this._target ? this._target.address : null;
  }

  [Symbol.asyncIterator]() {
    return this;
  }

  next() {
    if (this._buffer.length > 0) {
      const value = this._buffer.shift();
      if (this._paused && this._buffer.length <= this._highWater / 2 && this._call) {
        this._paused = false;
        this._call.resume();
        this._armIdle();
      }
      return Promise.resolve({ value, done: false });
    }
    if (this._error) {
      const err = this._error;
      this._error = null;
      this._done = true;
      return Promise.reject(err);
    }
    if (this._done) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve, reject) => {
      this._waiters.push({ resolve, reject });
    });
  }

  return() {
    this.cancel();
    return Promise.resolve({ value: undefined, done: true });
  }

  /** Ends the tail; a pending next() resolves done. */
  cancel() {
    if (this._done && !this._call) return;
    this._finish(null);
  }

  _open() {
    if (this._done) return;
    if (this._pool.closed) return this._finish(new Error("loggate: the client is closed"));
    const request = { ...this._request };
    const reopening = this._opened;
    this._opened = true;
    if (!reopening) {
      // Where a reopened tail that has received no record yet starts: from
      // when this one started (live: now; since: now less the duration), on
      // the gateway's clock as far as ours agrees with it.
      const now = Date.now();
      this._startedAt = timestamp(request.since ? Math.max(0, now - durationMs(request.since)) : now);
    }
    if (this.resumeToken) {
      delete request.since;
      delete request.start_time;
      delete request.from_beginning;
      request.resume_token = this.resumeToken;
    } else if (reopening && !request.from_beginning && !request.start_time) {
      // No token yet: no record matched so far. Go on from the newest record
      // the gateway said it had read (a heartbeat's head_time), or from when
      // the tail started; records that arrived while it was away are not lost.
      delete request.since;
      request.start_time = this._headTime || this._startedAt;
    }
    if (this._limit) request.limit = Math.max(1, this._limit - this._received);
    const target = this._pool.pick();
    this._target = target;
    let call;
    try {
      call = target.stub.Tail(request, this._pool.metadata(), {});
    } catch (err) {
      return this._finish(err);
    }
    this._call = call;
    // The call is over once both its status and the end of its data are in
    // (grpc-js emits 'status' before the records still buffered in the
    // stream have been read; 'end' comes after them).
    let status_ = null;
    let ended = false;
    const settle = () => {
      if (status_ && ended) this._closed(call, target, status_.code === status.OK ? null : status_.error);
    };
    call.on("data", (response) => {
      if (this._call !== call) return;
      this._failures = 0;
      this._armIdle();
      this._event(response);
    });
    call.on("error", (err) => {
      status_ = { code: err.code, error: err };
      settle();
    });
    call.on("status", (s) => {
      if (!status_) status_ = { code: s.code, error: Object.assign(new Error(s.details), s) };
      settle();
    });
    call.on("end", () => {
      ended = true;
      settle();
    });
    this._armIdle();
  }

  _event(response) {
    const opts = this._options;
    switch (response.event) {
      case "record": {
        const record = fromWire(response.record);
        record.resumeToken = response.resume_token;
        this.resumeToken = response.resume_token;
        this._received++;
        this._push(record);
        break;
      }
      case "caught_up":
        safe(opts.onCaughtUp);
        break;
      case "gap":
        safe(opts.onGap, response.gap?.reason ?? "");
        break;
      case "heartbeat":
        if (!this.resumeToken && response.heartbeat?.head_time) this._headTime = response.heartbeat.head_time;
        if (opts.onHeartbeat) {
          safe(opts.onHeartbeat, {
            time: response.heartbeat?.time ? tsDate(response.heartbeat.time) : null,
            headTime: response.heartbeat?.head_time ? tsDate(response.heartbeat.head_time) : null,
          });
        }
        break;
      default:
        break;
    }
  }

  _push(record) {
    if (this._waiters.length > 0) {
      this._waiters.shift().resolve({ value: record, done: false });
      return;
    }
    this._buffer.push(record);
    if (!this._paused && this._buffer.length >= this._highWater && this._call) {
      this._paused = true;
      this._call.pause();
      this._clearIdle(); // a paused tail is quiet because of us
    }
  }

  _closed(call, target, err) {
    if (this._call !== call) return;
    this._call = null;
    this._paused = false;
    this._clearIdle();
    if (this._done) return;
    if (!err) {
      // OK: the limit or history_only ended it.
      return this._finish(null);
    }
    if (this._limit && this._received >= this._limit) return this._finish(null);
    if (!TAIL_RETRY.has(err.code)) {
      err.target = target.address;
      return this._finish(err);
    }
    this._pool.failed(target);
    this._failures++;
    // The first try on each other gateway is at once; then back off.
    const n = this._failures - this._pool.size;
    const delay = n < 0 ? 0 : jitter(Math.min(this._backoffMax, this._backoffInitial * 2 ** n));
    safe(this._options.onReconnect, { error: err, target: this._pool.pick().address, delay });
    this._retryTimer = setTimeout(() => {
      this._retryTimer = null;
      this._open();
    }, delay);
  }

  _armIdle() {
    if (!this._idleTimeout || this._paused) return;
    this._clearIdle();
    const call = this._call;
    this._idleTimer = setTimeout(() => {
      // Not even a heartbeat: the connection is dead without saying so.
      if (this._call === call && call) {
        call.cancel();
        this._closed(
          call,
          this._target,
          Object.assign(new Error("no heartbeat from the gateway"), { code: status.UNAVAILABLE }),
        );
      }
    }, this._idleTimeout);
    this._idleTimer.unref?.();
  }

  _clearIdle() {
    if (this._idleTimer) clearTimeout(this._idleTimer);
    this._idleTimer = null;
  }

  _finish(err) {
    const call = this._call;
    this._call = null;
    this._done = true;
    this._clearIdle();
    if (this._retryTimer) clearTimeout(this._retryTimer);
    this._retryTimer = null;
    if (call) call.cancel();
    this._client._tails.delete(this);
    if (this._waiters.length > 0) {
      // (Waiters wait only on an empty buffer.) The first gets the error, if any.
      const waiters = this._waiters.splice(0);
      waiters.forEach((w, i) => (i === 0 && err ? w.reject(err) : w.resolve({ value: undefined, done: true })));
      return;
    }
    if (err) this._error = err;
  }
}

function tsDate(ts) {
  return new Date(Number(ts.seconds) * 1000 + Math.floor(Number(ts.nanos || 0) / 1e6));
}

function jitter(ms) {
  return Math.round(ms * (0.8 + Math.random() * 0.4));
}

function safe(fn, ...args) {
  if (typeof fn !== "function") return;
  try {
    fn(...args);
  } catch {
    // A callback's own error is not the tail's.
  }
}

function createClient(options) {
  return new Client(options);
}

module.exports = { Client, createClient, Tail, tailRequest };
