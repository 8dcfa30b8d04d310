// A Node service under test: logs COUNT numbered records through the winston
// transport of the `loggate` package at RATE records/s to the gateways in
// TARGETS, then closes the transport (which delivers what is queued) and
// prints its counters as one JSON line on stdout.
//
//   node app_node.js TARGETS SERVICE COUNT RATE
//
// Run from the directory where the package is installed as a user installs it.
"use strict";

const { performance } = require("node:perf_hooks");
const winston = require("winston");
const { LoggateTransport } = require("loggate/winston");

async function main() {
  const [targets, service, count, rate] = process.argv.slice(2);
  const transport = new LoggateTransport({ service, target: targets.split(",") });
  const logger = winston.createLogger({ level: "info", transports: [transport] });

  const started = performance.now();
  const calls = [];
  for (let n = 0; n < Number(count); n++) {
    // Paced against the start, so a slow moment does not lower the rate.
    const pause = started + (n * 1000) / Number(rate) - performance.now();
    if (pause > 0) await new Promise((resolve) => setTimeout(resolve, pause));
    const before = performance.now();
    logger.info(`${service}-${n}`, { seq: n });
    calls.push(performance.now() - before);
  }

  const stats = await transport.close(120_000);
  calls.sort((a, b) => a - b);
  const ms = (x) => Number(x.toFixed(3));
  console.log(
    JSON.stringify({
      ...stats,
      call_p99_ms: ms(calls[Math.floor(calls.length * 0.99)]),
      call_max_ms: ms(calls[calls.length - 1]),
    }),
  );
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
