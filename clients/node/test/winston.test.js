"use strict";

// The winston transport (`loggate/winston`), against real gateways.

const test = require("node:test");
const assert = require("node:assert/strict");
const os = require("node:os");
const winston = require("winston");
const { LoggateTransport } = require("loggate/winston");
const { createClient } = require("loggate");
const {
  inVhost,
  readHistory,
  waitForHistory,
  uniqueService,
  countBy,
  percentile,
  sleep,
  runApp,
} = require("./helpers");

const TRACE = "4bf92f3577b34da6a3ce929d0e0e4736";
const SPAN = "00f067aa0ba902b7";

test("winston: records arrive with the right fields", async () => {
  await inVhost(async (vhost) => {
    const gw = await vhost.gateway();
    const service = uniqueService("node-winston");
    const client = createClient({ target: gw.address });
    const transport = new LoggateTransport({ service, target: gw.address });
    const logger = winston.createLogger({
      level: "silly",
      format: winston.format.combine(winston.format.errors({ stack: true }), winston.format.timestamp()),
      defaultMeta: { component: "checkout" },
      transports: [transport],
    });
    try {
      logger.silly("s");
      logger.debug("d");
      logger.verbose("v");
      logger.http("h");
      logger.info("order placed", { user: "ann", cart: { items: 3 }, n: 5 });
      logger.warn("w", { trace_id: TRACE, span_id: SPAN, trace_flags: "01" });
      logger.error(new Error("card declined"));
      logger.error("payment failed", { cause: new TypeError("bad card") });
      assert.equal(await transport.flush(10000), true);

      const records = await readHistory(client, { services: [service] });
      assert.deepEqual(
        records.map((r) => [r.level, r.message]),
        [
          ["trace", "s"],
          ["debug", "d"],
          ["debug", "v"],
          ["info", "h"],
          ["info", "order placed"],
          ["warn", "w"],
          ["error", "card declined"],
          ["error", "payment failed"],
        ],
      );
      const info = records[4];
      assert.equal(info.service, service);
      assert.equal(info.node, os.hostname());
      assert.ok(Math.abs(info.time.getTime() - Date.now()) < 10000);
      assert.deepEqual(info.attributes, { component: "checkout", user: "ann", cart: '{"items":3}', n: "5" });
      assert.equal(records[5].traceId, TRACE);
      assert.equal(records[5].spanId, SPAN);
      assert.deepEqual(records[5].attributes, { component: "checkout" });
      const thrown = records[6].attributes;
      assert.equal(thrown["exception.type"], "Error");
      assert.match(thrown["exception.stacktrace"], /^Error: card declined\n\s+at /);
      const caused = records[7].attributes;
      assert.equal(caused["exception.type"], "TypeError");
      assert.equal(caused["exception.message"], "bad card");
    } finally {
      logger.close();
      await transport.close();
      await client.close();
    }
  });
});

test("winston: with the gateway stopped logger.info does not wait, and a new gateway gets every record once", async (t) => {
  await inVhost(async (vhost) => {
    const first = await vhost.gateway();
    const address = first.address;
    await first.stop();
    const service = uniqueService("node-winston-down");
    const transport = new LoggateTransport({
      service,
      target: address,
      backoff: { initial: 50, max: 500 },
      reconnectBackoff: { initial: 100, max: 500 },
    });
    const logger = winston.createLogger({ transports: [transport] });
    const client = createClient({ target: address });
    try {
      // 100 warm-up calls, then 1,000 timed ones, yielding now and then so
      // the sender's failing attempts run alongside.
      const times = [];
      for (let i = 0; i < 1100; i++) {
        const t0 = process.hrtime.bigint();
        logger.info(`m${i}`, { seq: i });
        const ns = Number(process.hrtime.bigint() - t0);
        if (i >= 100) times.push(ns / 1e6);
        if (i % 50 === 49) await sleep(2);
      }
      times.sort((x, y) => x - y);
      const p50 = percentile(times, 50);
      const p99 = percentile(times, 99);
      const max = times[times.length - 1];
      t.diagnostic(
        `logger.info, gateway down: p50 ${p50.toFixed(4)} ms, p99 ${p99.toFixed(4)} ms, max ${max.toFixed(3)} ms`,
      );
      assert.ok(p99 < 1, `p99 ${p99} ms`);
      const down = transport.stats();
      assert.equal(down.queued, 1100);
      assert.equal(down.sent, 0);
      assert.ok(down.retried > 0, "it did try");

      await vhost.gateway({ listen: address });
      assert.equal(await transport.flush(30000), true);
      assert.equal(transport.stats().sent, 1100);
      const records = await readHistory(client, { services: [service] });
      assert.equal(records.length, 1100);
      assert.equal(countBy(records.map((r) => r.id)).size, 1100, "each record once by id");
      assert.deepEqual(
        records.map((r) => Number(r.attributes.seq)),
        Array.from({ length: 1100 }, (_, i) => i),
      );
    } finally {
      logger.close();
      await transport.close();
      await client.close();
    }
  });
});

test("winston: a full queue drops and counts", async () => {
  await inVhost(async (vhost) => {
    const first = await vhost.gateway();
    const address = first.address;
    await first.stop();
    const transport = new LoggateTransport({
      service: uniqueService("node-winston-full"),
      target: address,
      queueSize: 50,
      warnInterval: 60000,
    });
    const logger = winston.createLogger({ transports: [transport] });
    const write = process.stderr.write;
    const warnings = [];
    process.stderr.write = (chunk, ...rest) =>
      String(chunk).startsWith("loggate:")
        ? (warnings.push(String(chunk)), true)
        : write.call(process.stderr, chunk, ...rest);
    try {
      for (let i = 0; i < 80; i++) logger.info(`m${i}`);
      const stats = transport.stats();
      assert.equal(stats.queued, 50);
      assert.equal(stats.dropped, 30);
      assert.equal(warnings.filter((w) => w.includes("queue full")).length, 1);
    } finally {
      process.stderr.write = write;
      await transport.close(100); // (before logger.close(), which would close it with the default timeout)
      logger.close();
    }
  });
});

test("winston: logger.close() and logger.end() deliver what is queued before the process exits", async () => {
  await inVhost(async (vhost) => {
    const gw = await vhost.gateway();
    const client = createClient({ target: gw.address });
    try {
      for (const mode of ["close", "end"]) {
        const service = uniqueService(`node-winston-${mode}`);
        const app = await runApp("winston-app.js", {
          TEST_TARGET: gw.address,
          TEST_SERVICE: service,
          TEST_COUNT: "500",
          TEST_MODE: mode,
        });
        assert.equal(app.code, 0, app.stderr);
        const records = await readHistory(client, { services: [service] });
        assert.equal(records.length, 500, `mode ${mode}`);
        if (mode === "end") assert.match(app.stdout, /finished: \{"sent":500,/);
      }
    } finally {
      await client.close();
    }
  });
});
