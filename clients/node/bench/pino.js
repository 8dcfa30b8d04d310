#!/usr/bin/env node
"use strict";

// Throughput of the pino transport to a running gateway, and what a
// logger.info call costs the application. Not a test.
//
//   node bench/pino.js --target 127.0.0.1:50051 [--records 200000] [--batch-size 500] [--inflight 4]
//
// Logs --records records as fast as the loop goes (each call timed), ends the
// transport (which returns once the worker has delivered everything), and
// prints: the app-side cost per logger.info (mean, p50, p99, max), records/s
// end to end (first call to everything confirmed by RabbitMQ), and, unless
// --no-verify, how many records of this run's service the history holds
// (read back with a Tail), which must be all of them.
//
// Run it from clients/node after `npm install` (it uses the package's own
// source and its devDependency pino).

const path = require("node:path");
const { parseArgs } = require("node:util");
const pino = require("pino");
const { createClient } = require("..");

const { values: args } = parseArgs({
  options: {
    target: { type: "string", default: "127.0.0.1:50051" },
    records: { type: "string", default: "200000" },
    service: { type: "string", default: `bench-pino-${process.pid}` },
    "batch-size": { type: "string", default: "500" },
    inflight: { type: "string", default: "4" },
    "no-verify": { type: "boolean", default: false },
  },
});
const N = Number(args.records);

async function main() {
  const transport = pino.transport({
    target: path.join(__dirname, "..", "lib", "pino.js"),
    options: {
      service: args.service,
      target: args.target,
      queueSize: N, // measure throughput, not the drop policy
      batchSize: Number(args["batch-size"]),
      maxInflightRequests: Number(args.inflight),
      closeTimeout: 9000, // thread-stream gives the worker 10 s to end
    },
  });
  const logger = pino(transport);
  await new Promise((resolve) => transport.once("ready", resolve));

  const times = new Float64Array(N);
  const started = process.hrtime.bigint();
  for (let i = 0; i < N; i++) {
    const t0 = process.hrtime.bigint();
    logger.info({ seq: i, user: "ann", path: "/checkout" }, "order placed");
    times[i] = Number(process.hrtime.bigint() - t0);
  }
  const logged = process.hrtime.bigint();
  const finished = new Promise((resolve) => transport.once("finish", resolve));
  transport.end(); // blocks until the worker has delivered everything and closed
  await finished;
  const done = process.hrtime.bigint();

  times.sort();
  const pct = (p) => times[Math.min(N - 1, Math.ceil((p / 100) * N) - 1)] / 1000;
  const loopSeconds = Number(logged - started) / 1e9;
  const totalSeconds = Number(done - started) / 1e9;
  console.log(`records:            ${N} (service ${args.service}, gateway ${args.target})`);
  console.log(
    `app cost/logger.info: mean ${((loopSeconds / N) * 1e6).toFixed(2)} µs, p50 ${pct(50).toFixed(2)} µs, p99 ${pct(99).toFixed(2)} µs, max ${pct(100).toFixed(0)} µs`,
  );
  console.log(`logging loop:       ${loopSeconds.toFixed(2)} s (${Math.round(N / loopSeconds)} calls/s)`);
  console.log(
    `end to end:         ${totalSeconds.toFixed(2)} s -> ${Math.round(N / totalSeconds)} records/s delivered`,
  );

  if (!args["no-verify"]) {
    const client = createClient({ target: args.target });
    let count = 0;
    for await (const r of client.tail({ services: [args.service], fromBeginning: true, historyOnly: true })) {
      void r;
      count++;
    }
    await client.close();
    console.log(`in the history:     ${count} of ${N}${count === N ? "" : "  <-- MISSING"}`);
    if (count !== N) process.exitCode = 1;
  }
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
