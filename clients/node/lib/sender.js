"use strict";

// The background sender behind the pino and winston transports (and
// createSender): a bounded queue the application appends to without waiting,
// drained in batches over one LogStream call with a few requests pipelined.
//
// - send() never blocks and never throws: a record is made valid (cut, not
//   refused), given its id, and queued; with the queue full it is dropped and
//   counted, with at most one warning per interval on stderr.
// - Every record keeps its id across retries, so a consumer that deduplicates
//   by id sees each record once even when a retry resends it.
// - A request answered with UNAVAILABLE, RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED
//   or ABORTED, and every request in flight on a stream that breaks, goes back
//   to the front of the queue and is sent again after an exponential backoff;
//   a broken stream also moves to the next gateway. Permanent refusals
//   (INVALID_ARGUMENT, PERMISSION_DENIED, …) are reported once per interval and
//   dropped, never retried forever; an INVALID_ARGUMENT batch is split so that
//   only the record it names is lost.
// - flush() and close() deliver what is queued within a timeout; a process
//   that runs out of work with records queued gets one last flush
//   (beforeExit), bounded the same way.

const os = require("node:os");
const grpc = require("@grpc/grpc-js");
const { sanitize, nodeName, isValidService, LIMITS } = require("./record");
const { encodeRecord, encodeStreamRequest } = require("./encode");
const { load } = require("./proto");

const LOG_STREAM = "/loggate.v1.LogGateway/LogStream";

const { status } = grpc;

// Per-request errors worth sending again (with backoff, same ids).
const RETRY = new Set([status.UNAVAILABLE, status.RESOURCE_EXHAUSTED, status.DEADLINE_EXCEEDED, status.ABORTED]);
// Per-request errors that no retry will change: report, drop.
const PERMANENT = new Set([
  status.INVALID_ARGUMENT,
  status.FAILED_PRECONDITION,
  status.PERMISSION_DENIED,
  status.UNAUTHENTICATED,
  status.NOT_FOUND,
  status.ALREADY_EXISTS,
  status.OUT_OF_RANGE,
  status.UNIMPLEMENTED,
]);
// Stream-level statuses that condemn the requests in flight (the call itself
// was refused); anything else that ends a stream is a broken stream.
const STREAM_PERMANENT = new Set([status.UNAUTHENTICATED, status.PERMISSION_DENIED, status.UNIMPLEMENTED]);
// Stream-level statuses after which what was in flight is sent again for
// as long as it takes (the gateway went away, or we gave up waiting).
const STREAM_RETRY = new Set([
  status.UNAVAILABLE,
  status.DEADLINE_EXCEEDED,
  status.CANCELLED,
  status.RESOURCE_EXHAUSTED,
]);
// Other errors (UNKNOWN, INTERNAL, …) are tried this many times per record.
const MAX_ATTEMPTS_UNKNOWN = 5;

const CODE_NAMES = Object.fromEntries(Object.entries(status).map(([k, v]) => [v, k]));

const live = new Set();
let exitHookInstalled = false;
function installExitHook() {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // The event loop ran dry with records still queued (the app forgot
  // close()): try once more, bounded by closeTimeout.
  process.on("beforeExit", () => {
    for (const sender of live) sender._beforeExit();
  });
}

class Sender {
  /**
   * @param {object} options see index.d.ts (SenderOptions)
   */
  constructor(options = {}) {
    const { Client } = require("./client"); // (circular at load time)
    if (options.service !== undefined && !isValidService(options.service)) {
      throw new TypeError(
        `loggate: service ${JSON.stringify(options.service)} must be 1..64 characters of [A-Za-z0-9_-]`,
      );
    }
    this._client = options.client || new Client(options);
    this._ownsClient = !options.client;
    this._pool = this._client._pool;
    this._defaults = {
      service: options.service,
      node: options.node === undefined || options.node === null ? nodeName(os.hostname()) : nodeName(options.node),
    };
    this._queueSize = positive(options.queueSize, 10000);
    this._batchSize = Math.min(positive(options.batchSize, 500), 1000); // gateway --max-batch default
    this._maxBatchBytes = positive(options.maxBatchBytes, 1024 * 1024);
    this._flushInterval = nonNegative(options.flushInterval, 100);
    this._maxInflight = positive(options.maxInflightRequests, 4);
    this._requestTimeout = positive(options.requestTimeout, 30000);
    this._backoffInitial = positive(options.backoff?.initial, 100);
    this._backoffMax = positive(options.backoff?.max, 10000);
    this._closeTimeout = nonNegative(options.closeTimeout, 5000);
    this._idleClose = nonNegative(options.streamIdleTimeout, 500);
    this._warnInterval = nonNegative(options.warnInterval, 10000);
    this._maxMessageBytes = positive(options.maxMessageBytes, LIMITS.maxMessageBytes);
    this._onError = typeof options.onError === "function" ? options.onError : null;

    // The queue: records waiting to be sent, oldest first (a ring buffer).
    // `held` counts them and the records in flight, and is what the bound
    // applies to, so records coming back from a failed request always fit.
    this._ring = new Array(this._queueSize);
    this._head = 0;
    this._waiting = 0;
    this._held = 0;
    this._inflight = new Map(); // seq → { records, bytes, sentAt }
    this._seq = 0;

    this._stream = null;
    this._streamTarget = null;
    this._failures = 0;
    this._pausedUntil = 0;
    this._timer = null; // linger or backoff
    this._timerAt = 0;
    this._idleTimer = null;
    this._requestTimer = null;
    this._flushing = 0; // flush() calls in progress: send partial batches now
    this._flushWaiters = [];
    this._enqueued = 0; // ordinal of the next record
    this._closed = false;
    this._closing = null;
    this._exitFlushed = false;
    this._shutDown = false;
    this._pumpScheduled = false;

    this._stats = { sent: 0, dropped: 0, retried: 0, failed: 0 };
    this._dropWarn = { last: 0, pending: 0 };
    this._reported = new Map(); // code → { last, pending }

    live.add(this);
    installExitHook();
  }

  /**
   * Queues a record. Returns true when queued, false when dropped (queue
   * full, or the sender closed). Never throws, never waits.
   */
  send(record) {
    try {
      if (this._closed) {
        this._stats.dropped++;
        return false;
      }
      if (this._held >= this._queueSize) {
        this._stats.dropped++;
        this._warnDropped();
        return false;
      }
      const wire = sanitize(record || {}, this._defaults, this._maxMessageBytes);
      const entry = { wire, buf: null, n: this._enqueued++, attempts: 0, solo: false };
      this._ring[(this._head + this._waiting) % this._queueSize] = entry;
      this._waiting++;
      this._held++;
      this._wake();
      return true;
    } catch (err) {
      this._stats.dropped++;
      this._report("internal", `loggate: a record could not be queued: ${err && err.message}`);
      return false;
    }
  }

  /** Counters: sent, dropped, retried, failed, queued (waiting or in flight); and the current target. */
  stats() {
    return {
      ...this._stats,
      queued: this._held,
      target: this._pool.pick().address,
    };
  }

  /**
   * Sends what is queued now, without waiting for a full batch; resolves
   * true once every record queued before the call is delivered or dropped,
   * false if `timeout` ms (default closeTimeout) passed first. Never rejects.
   */
  flush(timeout = this._closeTimeout) {
    if (this._held === 0) return Promise.resolve(true);
    const mark = this._enqueued;
    let remaining = this._held; // every held record is older than the mark
    return new Promise((resolve) => {
      const waiter = {
        mark,
        remaining,
        resolve: (ok) => {
          clearTimeout(waiter.timer);
          this._flushing--;
          this._flushWaiters = this._flushWaiters.filter((w) => w !== waiter);
          resolve(ok);
        },
        timer: null,
      };
      waiter.timer = setTimeout(() => waiter.resolve(false), timeout);
      this._flushing++;
      this._flushWaiters.push(waiter);
      this._wake(true);
    });
  }

  /**
   * Stops taking records, delivers what is queued within `timeout` ms
   * (default closeTimeout), then ends the stream; records still undelivered
   * then are counted as dropped. Resolves with the final stats; never rejects.
   */
  close(timeout = this._closeTimeout) {
    if (this._closing) return this._closing;
    this._closed = true;
    this._closing = (async () => {
      try {
        await this.flush(timeout);
      } catch {
        // flush never rejects; whatever is left is counted below
      }
      const lost = this._held;
      if (lost > 0) {
        this._stats.dropped += lost;
        this._warn(
          `loggate: closed with ${lost} record(s) undelivered after ${timeout} ms (gateway ${this._pool.pick().address})`,
        );
      }
      this._shutdown();
      return this.stats();
    })();
    return this._closing;
  }

  // ------------------------------------------------------------ pumping

  /** Something changed: send now, or arm the linger timer. */
  _wake(now = false) {
    if (this._waiting === 0) return;
    const due =
      now || this._flushing > 0 || this._closed || this._waiting >= this._batchSize || this._flushInterval === 0;
    if (Date.now() < this._pausedUntil) return this._arm(this._pausedUntil - Date.now(), true);
    if (due) {
      if (!this._pumpScheduled) {
        this._pumpScheduled = true;
        setImmediate(() =>
          this._safely(() => {
            this._pumpScheduled = false;
            this._pump();
          }),
        );
      }
    } else if (!this._timer) {
      this._arm(this._flushInterval, false);
    }
  }

  _arm(ms, backoff) {
    const at = Date.now() + ms;
    if (this._timer && this._timerAt <= at) return;
    if (this._timer) clearTimeout(this._timer);
    this._timerAt = at;
    this._timer = setTimeout(
      () =>
        this._safely(() => {
          this._timer = null;
          this._pump(true);
        }),
      ms,
    );
    // A linger timer holds the process for at most flushInterval; a backoff
    // with no gateway must not hold it forever (beforeExit flushes instead).
    if (backoff) this._timer.unref();
  }

  _pump(timerFired = false) {
    if (this._waiting === 0 || this._shutDown) return;
    if (Date.now() < this._pausedUntil) return this._arm(this._pausedUntil - Date.now(), true);
    const partialOk = timerFired || this._flushing > 0 || this._closed || this._flushInterval === 0;
    if (!this._stream && !this._openStream()) return;
    while (this._stream && this._waiting > 0 && this._inflight.size < this._maxInflight) {
      if (this._waiting < this._batchSize && !partialOk) break;
      this._sendBatch();
    }
    if (this._waiting > 0 && this._inflight.size < this._maxInflight && !this._timer) {
      this._arm(this._flushInterval, false);
    }
  }

  _sendBatch() {
    const records = [];
    const bufs = [];
    let bytes = 0;
    while (this._waiting > 0 && records.length < this._batchSize) {
      const entry = this._ring[this._head];
      if (!entry.buf) {
        // Encoded once, when first sent: a retry sends the same bytes.
        try {
          entry.buf = encodeRecord(entry.wire);
          entry.wire = null;
        } catch (err) {
          this._take();
          this._fail([entry], "encode", `loggate: a record could not be encoded: ${err.message}`);
          continue;
        }
      }
      if (records.length > 0 && (entry.solo || bytes + entry.buf.length > this._maxBatchBytes)) break;
      this._take();
      records.push(entry);
      bufs.push(entry.buf);
      bytes += entry.buf.length;
      if (entry.solo) break;
    }
    if (records.length === 0) return;
    const seq = ++this._seq;
    for (const e of records) e.attempts++;
    this._inflight.set(seq, { records, sentAt: Date.now() });
    this._armRequestTimer();
    this._clearIdle();
    try {
      this._stream.write({ seq, records: bufs });
    } catch (err) {
      this._streamBroken(this._stream, err);
    }
  }

  /** Removes the record at the head of the queue (it is in hand). */
  _take() {
    this._ring[this._head] = undefined;
    this._head = (this._head + 1) % this._queueSize;
    this._waiting--;
  }

  _openStream() {
    if (this._pool.closed) return false;
    const target = this._pool.pick();
    let call;
    try {
      call = target.stub.makeBidiStreamRequest(
        LOG_STREAM,
        encodeStreamRequest,
        decodeResponse(),
        this._pool.metadata(),
        {},
      );
    } catch (err) {
      this._report("internal", `loggate: could not open a LogStream: ${err.message}`);
      return false;
    }
    this._stream = call;
    this._streamTarget = target;
    call.on("data", (response) => this._safely(() => this._answer(call, response)));
    call.on("error", (err) => this._safely(() => this._streamBroken(call, err)));
    call.on("status", (s) => {
      if (s.code === status.OK) this._safely(() => this._streamBroken(call, null));
    });
    return true;
  }

  _answer(call, response) {
    if (call !== this._stream) return;
    const seq = Number(response.seq);
    const request = this._inflight.get(seq);
    if (!request) return;
    this._inflight.delete(seq);
    this._armRequestTimer();
    const err = response.error;
    if (!err || !err.code) {
      this._failures = 0;
      this._settle(request.records, "sent");
    } else {
      this._refused(request.records, err.code, err.message || "");
    }
    if (this._inflight.size === 0 && this._waiting === 0) this._armIdle();
    this._wake();
  }

  /** A request answered with its own error. */
  _refused(records, code, message) {
    if (RETRY.has(code)) {
      this._requeue(records);
      this._backOff();
      return;
    }
    if (code === status.INVALID_ARGUMENT && records.length > 1) {
      // The gateway names the record: records[3]…; drop it, resend the rest.
      const m = /^records\[(\d+)\]/.exec(message);
      const bad = m ? Number(m[1]) : -1;
      if (bad >= 0 && bad < records.length) {
        this._fail([records[bad]], code, message);
        this._requeue(records.filter((_, i) => i !== bad));
      } else {
        for (const r of records) r.solo = true; // find it by sending them one by one
        this._requeue(records);
      }
      return;
    }
    if (PERMANENT.has(code)) {
      this._fail(records, code, message);
      return;
    }
    // Unknown kinds: a few tries, then give up on them.
    const again = records.filter((r) => r.attempts < MAX_ATTEMPTS_UNKNOWN);
    const give = records.filter((r) => r.attempts >= MAX_ATTEMPTS_UNKNOWN);
    if (give.length) this._fail(give, code, message);
    if (again.length) {
      this._requeue(again);
      this._backOff();
    }
  }

  /** The stream ended (err null: OK, which with requests in flight is also a break). */
  _streamBroken(call, err) {
    if (!call || call !== this._stream) return;
    this._stream = null;
    this._clearIdle();
    this._clearRequestTimer();
    const target = this._streamTarget;
    const inflight = [...this._inflight.keys()].sort((a, b) => a - b).map((k) => this._inflight.get(k));
    this._inflight.clear();
    try {
      call.cancel();
    } catch {
      // already over
    }
    if (inflight.length === 0 && !err) return this._wake();
    const code = err ? err.code : status.UNAVAILABLE;
    const records = inflight.flatMap((r) => r.records);
    if (err && STREAM_PERMANENT.has(code)) {
      this._fail(records, code, err.details || err.message);
      this._failures++;
      this._pausedUntil = Date.now() + this._backoffMax;
      return this._wake();
    }
    if (!STREAM_RETRY.has(code)) {
      // A stream that keeps breaking for another reason (a proxy refusing
      // the request, a gateway bug): a few tries per record, not forever.
      const give = records.filter((r) => r.attempts >= MAX_ATTEMPTS_UNKNOWN);
      if (give.length) {
        this._fail(give, code, err ? err.details || err.message : "the stream ended");
        records.splice(0, records.length, ...records.filter((r) => r.attempts < MAX_ATTEMPTS_UNKNOWN));
      }
    }
    this._requeue(records);
    // Next gateway; the first try on each other one at once, then back off.
    this._pool.failed(target);
    this._failures++;
    const n = this._failures - this._pool.size;
    if (n >= 0) this._pausedUntil = Date.now() + this._delay(n);
    if (err && code !== status.CANCELLED && this._failures >= this._pool.size) {
      this._report(
        code,
        `loggate: no gateway takes records (last: ${target.address}: ${err.details || err.message}); retrying`,
      );
    }
    this._wake();
  }

  _backOff() {
    this._failures++;
    this._pausedUntil = Date.now() + this._delay(this._failures - 1);
  }

  _delay(n) {
    const ms = Math.min(this._backoffMax, this._backoffInitial * 2 ** Math.min(n, 30));
    return Math.round(ms * (0.8 + Math.random() * 0.4));
  }

  /** Records back to the front of the queue, in their order, to be sent again. */
  _requeue(records) {
    if (records.length === 0) return;
    this._stats.retried += records.length;
    for (let i = records.length - 1; i >= 0; i--) {
      this._head = (this._head - 1 + this._queueSize) % this._queueSize;
      this._ring[this._head] = records[i];
      this._waiting++;
    }
  }

  _fail(records, code, message) {
    this._stats.failed += records.length;
    this._settle(records, null);
    if (code === "encode") return this._report(code, message);
    this._report(
      code,
      `loggate: the gateway refused ${records.length} record(s) for good: ${CODE_NAMES[code] || code}: ${message}`,
    );
  }

  /** Records leave the sender (delivered, or failed for good). */
  _settle(records, outcome) {
    if (outcome === "sent") this._stats.sent += records.length;
    this._held -= records.length;
    if (this._flushWaiters.length === 0) return;
    for (const w of this._flushWaiters.slice()) {
      for (const r of records) if (r.n < w.mark) w.remaining--;
      if (w.remaining <= 0) w.resolve(true);
    }
  }

  // ------------------------------------------------------------ timers

  _armRequestTimer() {
    this._clearRequestTimer();
    if (this._inflight.size === 0) return;
    let oldest = Infinity;
    for (const r of this._inflight.values()) oldest = Math.min(oldest, r.sentAt);
    const call = this._stream;
    this._requestTimer = setTimeout(
      () =>
        // No answer in time: the stream is stuck; send it all again elsewhere.
        this._safely(() =>
          this._streamBroken(
            call,
            Object.assign(new Error("no answer within requestTimeout"), { code: status.DEADLINE_EXCEEDED }),
          ),
        ),
      Math.max(0, oldest + this._requestTimeout - Date.now()),
    );
    this._requestTimer.unref();
  }

  _clearRequestTimer() {
    if (this._requestTimer) clearTimeout(this._requestTimer);
    this._requestTimer = null;
  }

  /** Nothing queued nor in flight: end the stream soon, so it holds neither the process nor the gateway. */
  _armIdle() {
    this._clearIdle();
    const call = this._stream;
    if (!call) return;
    this._idleTimer = setTimeout(() => {
      this._idleTimer = null;
      if (call === this._stream && this._inflight.size === 0) {
        this._stream = null;
        call.end();
      }
    }, this._idleClose);
    this._idleTimer.unref();
  }

  _clearIdle() {
    if (this._idleTimer) clearTimeout(this._idleTimer);
    this._idleTimer = null;
  }

  _beforeExit() {
    if (this._exitFlushed || this._closing || this._held === 0) return;
    this._exitFlushed = true;
    // A ref'd wait keeps the loop alive for the flush.
    this.flush(this._closeTimeout).then(() => {
      if (this._held > 0) {
        this._warn(`loggate: exiting with ${this._held} record(s) undelivered (gateway ${this._pool.pick().address})`);
      }
    });
  }

  _shutdown() {
    if (this._shutDown) return;
    this._shutDown = true;
    live.delete(this);
    if (this._timer) clearTimeout(this._timer);
    this._timer = null;
    this._clearIdle();
    this._clearRequestTimer();
    const call = this._stream;
    this._stream = null;
    if (call) {
      try {
        if (this._inflight.size === 0) call.end();
        else call.cancel();
      } catch {
        // already over
      }
    }
    this._inflight.clear();
    for (let i = 0; i < this._waiting; i++) this._ring[(this._head + i) % this._queueSize] = undefined;
    this._waiting = 0;
    this._held = 0;
    for (const w of this._flushWaiters.slice()) w.resolve(false);
    if (this._ownsClient) this._client._pool.close();
    if (this._onClosed) this._onClosed();
  }

  // ------------------------------------------------------------ reporting

  /** Runs background work: a bug of ours is reported, never thrown into the application. */
  _safely(fn) {
    try {
      fn();
    } catch (err) {
      this._report("internal", `loggate: internal error in the sender: ${(err && err.stack) || err}`);
    }
  }

  _warnDropped() {
    const w = this._dropWarn;
    w.pending++;
    const now = Date.now();
    if (now - w.last < this._warnInterval) return;
    w.last = now;
    const n = w.pending;
    w.pending = 0;
    this._warn(
      `loggate: queue full (${this._queueSize} records): dropped ${n} record(s) since the last warning, ${this._stats.dropped} in all (gateway ${this._pool.pick().address})`,
    );
  }

  /** Once per interval per kind of error: to onError, or else stderr. */
  _report(code, text) {
    const now = Date.now();
    let r = this._reported.get(code);
    if (!r) this._reported.set(code, (r = { last: -Infinity, pending: 0 }));
    if (now - r.last < this._warnInterval) {
      r.pending++;
      return;
    }
    r.last = now;
    const more = r.pending ? ` (and ${r.pending} more like it)` : "";
    r.pending = 0;
    if (this._onError) {
      try {
        this._onError(Object.assign(new Error(text + more), { code }));
      } catch {
        // not ours to throw
      }
      return;
    }
    this._warn(text + more);
  }

  _warn(text) {
    try {
      process.stderr.write(text + "\n");
    } catch {
      // stderr is gone; nothing to tell
    }
  }
}

function decodeResponse() {
  return load().LogGateway.service.LogStream.responseDeserialize;
}

function positive(v, dflt) {
  return typeof v === "number" && v > 0 ? v : dflt;
}

function nonNegative(v, dflt) {
  return typeof v === "number" && v >= 0 ? v : dflt;
}

function createSender(options) {
  return new Sender(options);
}

module.exports = { Sender, createSender };
