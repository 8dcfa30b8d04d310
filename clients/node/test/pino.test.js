"use strict";

// The pino transport (`loggate/pino`, in pino's worker thread), against real gateways.

const test = require("node:test");
const assert = require("node:assert/strict");
const os = require("node:os");
const { once } = require("node:events");
const pino = require("pino");
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

test("pino: records arrive with the right fields", async () => {
  await inVhost(async (vhost) => {
    const gw = await vhost.gateway();
    const service = uniqueService("node-pino");
    const client = createClient({ target: gw.address });
    const transport = pino.transport({ target: "loggate/pino", options: { service, target: gw.address } });
    const logger = pino({ name: "checkout-api", level: "trace" }, transport);
    try {
      const time = Date.now();
      logger.trace("t");
      logger.debug("d");
      logger.info({ user: "ann", cart: { items: 3 }, ok: true }, "order placed");
      logger.warn("w");
      const err = new Error("card declined");
      err.code = "E_CARD";
      logger.error({ err, trace_id: TRACE, span_id: SPAN, trace_flags: "01" }, "payment failed");
      logger.fatal("f");
      transport.end(); // waits for the worker to deliver
      await once(transport, "close");

      const records = await readHistory(client, { services: [service] });
      assert.deepEqual(
        records.map((r) => [r.level, r.message]),
        [
          ["trace", "t"],
          ["debug", "d"],
          ["info", "order placed"],
          ["warn", "w"],
          ["error", "payment failed"],
          ["fatal", "f"],
        ],
      );
      const info = records[2];
      assert.equal(info.service, service);
      assert.equal(info.node, os.hostname());
      assert.ok(Math.abs(info.time.getTime() - time) < 5000);
      assert.deepEqual(info.attributes, {
        logger: "checkout-api",
        pid: String(process.pid),
        user: "ann",
        cart: '{"items":3}',
        ok: "true",
      });
      const error = records[4];
      assert.equal(error.traceId, TRACE);
      assert.equal(error.spanId, SPAN);
      assert.equal(error.attributes["exception.type"], "Error");
      assert.equal(error.attributes["exception.message"], "card declined");
      assert.match(error.attributes["exception.stacktrace"], /^Error: card declined\n\s+at /);
      assert.equal(error.attributes["exception.code"], "E_CARD");
      assert.equal(error.attributes.trace_flags, undefined);
      assert.equal(error.attributes.trace_id, undefined);
    } finally {
      transport.end();
      await client.close();
    }
  });
});

test("pino: with the gateway stopped logger.info does not wait, and a new gateway gets every record once", async (t) => {
  await inVhost(async (vhost) => {
    const first = await vhost.gateway();
    const address = first.address;
    await first.stop();
    const service = uniqueService("node-pino-down");
    const transport = pino.transport({
      target: "loggate/pino",
      options: {
        service,
        target: address,
        backoff: { initial: 50, max: 500 },
        reconnectBackoff: { initial: 100, max: 500 },
      },
    });
    const logger = pino(transport);
    await once(transport, "ready"); // (after pino(): the worker waits for pino's config)
    const client = createClient({ target: address });
    try {
      // 100 warm-up calls, then 1,000 timed ones, yielding now and then so
      // the worker's failing sends run alongside.
      const times = [];
      for (let i = 0; i < 1100; i++) {
        const t0 = process.hrtime.bigint();
        logger.info({ seq: i }, `m${i}`);
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

      await vhost.gateway({ listen: address });
      await waitForHistory(client, { services: [service] }, (rs) => rs.length >= 1100, 30000);
      transport.end();
      const records = await readHistory(client, { services: [service] });
      const ids = countBy(records.map((r) => r.id));
      assert.equal(records.length, 1100);
      assert.equal(ids.size, 1100, "each record once by id");
      assert.deepEqual(
        [...new Set(records.map((r) => Number(r.attributes.seq)))].sort((x, y) => x - y),
        Array.from({ length: 1100 }, (_, i) => i),
      );
    } finally {
      transport.end();
      await client.close();
    }
  });
});

test("pino: closing the transport delivers what is queued (transport.end(), and the process's own exit)", async () => {
  await inVhost(async (vhost) => {
    const gw = await vhost.gateway();
    const client = createClient({ target: gw.address });
    try {
      for (const mode of ["end", "exit"]) {
        const service = uniqueService(`node-pino-${mode}`);
        const app = await runApp("pino-app.js", {
          TEST_TARGET: gw.address,
          TEST_SERVICE: service,
          TEST_COUNT: "500",
          TEST_MODE: mode,
        });
        assert.equal(app.code, 0, app.stderr);
        const records = await readHistory(client, { services: [service] });
        assert.equal(records.length, 500, `mode ${mode}`);
      }
    } finally {
      await client.close();
    }
  });
});
