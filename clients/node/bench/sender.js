#!/usr/bin/env node
"use strict";

// Throughput of the bare sender (no logger) to a running gateway. Not a test.
//
//   node bench/sender.js --target 127.0.0.1:50051 [--records 100000] [--batch-size 500] [--inflight 4]

const { parseArgs } = require("node:util");
const { createSender } = require("..");

const { values: args } = parseArgs({
  options: {
    target: { type: "string", default: "127.0.0.1:50051" },
    records: { type: "string", default: "100000" },
    service: { type: "string", default: `bench-sender-${process.pid}` },
    "batch-size": { type: "string", default: "500" },
    inflight: { type: "string", default: "4" },
  },
});
const N = Number(args.records);
const sender = createSender({
  target: args.target,
  service: args.service,
  queueSize: N,
  batchSize: Number(args["batch-size"]),
  maxInflightRequests: Number(args.inflight),
});

const started = process.hrtime.bigint();
const cpu0 = process.cpuUsage();
for (let i = 0; i < N; i++) {
  sender.send({ message: "order placed", attributes: { seq: i, user: "ann", path: "/checkout" } });
}
const queued = process.hrtime.bigint();
sender.flush(120000).then(async (ok) => {
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  const cpu = process.cpuUsage(cpu0);
  console.log(`records:    ${N} (service ${args.service}, gateway ${args.target})`);
  console.log(`send():     ${(Number(queued - started) / 1e3 / N).toFixed(2)} µs per call`);
  console.log(
    `delivered:  ${ok ? "all" : "NOT all"} in ${seconds.toFixed(2)} s -> ${Math.round(N / seconds)} records/s`,
  );
  console.log(`client CPU: ${((cpu.user + cpu.system) / N).toFixed(2)} µs per record`);
  console.log(`stats:      ${JSON.stringify(await sender.close())}`);
});
