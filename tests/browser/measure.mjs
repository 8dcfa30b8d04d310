#!/usr/bin/env node
// Measures the web page's targets and prints the numbers (a measurement,
// not a test: it asserts nothing). Run after a release build:
//
//   cargo build --release -p loggate -p loggate-bench
//   LOGGATE_BIN=target/release/loggate tests/browser/measure.mjs
//
// 1. Latency: 1,000 records logged with the CLI (`loggate log`), 4 at a
//    time; for each, the time from `log` printing its id (it prints once
//    the Log call returned) to the page putting its row in the DOM (the
//    page notes that moment when window.__loggateShown exists). p50, p99, max.
// 2. Responsiveness: `loggate-bench bench --mode unary` logs 40,000
//    records from 2 clients (its report line, with the rate it reached, is
//    printed); once the list holds 10,000 records, every frame gap
//    (requestAnimationFrame to requestAnimationFrame), every long task
//    (PerformanceObserver) and the renderer's main-thread time (CDP) are
//    recorded for the rest of the run. First, as a control, the same load
//    while the page's filter matches nothing: what the machine (2 cores,
//    shared, the gateway, RabbitMQ and the load on them) does to frames.
// 3. Binary size: with MAIN_BIN=path/to/main's/loggate, the release binary
//    against it.
import { execFile, spawn } from "node:child_process";
import { statSync } from "node:fs";
import { loadavg } from "node:os";
import { dirname, resolve } from "node:path";
import { promisify } from "node:util";

import { chromium } from "@playwright/test";

import { BIN, createVhost, freePort, startGateway } from "./gateway.mjs";

const run = promisify(execFile);
const BENCH = resolve(dirname(BIN), "loggate-bench");
const RECORDS = Number(process.env.RECORDS || 1000);
const now = () => performance.timeOrigin + performance.now();
const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));

function quantile(sorted, q) {
  return sorted[Math.min(sorted.length - 1, Math.ceil(q * sorted.length) - 1)];
}

/** Runs `loggate log` and resolves to [id, the moment its id arrived]. */
function logOne(grpc, service, message) {
  return new Promise((ok, fail) => {
    const child = spawn(BIN, ["log", "--server", grpc, "--service", service, "--", message]);
    let out = "";
    let at = 0;
    child.stdout.on("data", (chunk) => {
      at = at || now();
      out += chunk;
    });
    // "close", not "exit": the id may still be in the pipe at exit.
    child.once("close", (code) =>
      code === 0 ? ok([out.trim(), at]) : fail(new Error(`loggate log exited ${code}`)),
    );
  });
}

async function latency(page, gateway) {
  const service = `latency${Date.now()}`;
  await page.locator("#f-service").fill(service);
  await page.locator("#f-service").press("Enter");
  await page.locator('#conn[data-state="live"]').waitFor();
  const returned = new Map();
  let next = 0;
  const worker = async () => {
    while (next < RECORDS) {
      const i = next++;
      const [id, at] = await logOne(gateway.grpc, service, `record ${i}`);
      returned.set(id, at);
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
  // Every record is drawn at least once (the page draws every frame at
  // this rate); wait until the last one was, then a little for stragglers.
  await page
    .waitForFunction((n) => window.__loggateShown.size >= n, RECORDS, { timeout: 30_000 })
    .catch(() => {});
  const shown = new Map(await page.evaluate(() => [...window.__loggateShown]));
  const arrived = new Map(await page.evaluate(() => [...window.__loggateArrived]));
  const report = (what, gaps) => {
    const ms = gaps.filter((g) => !Number.isNaN(g)).sort((a, b) => a - b);
    const missing = gaps.length - ms.length;
    console.log(
      `${what}, ${ms.length} records` +
        (missing ? ` (${missing} never shown)` : "") +
        `: p50 ${quantile(ms, 0.5).toFixed(1)} ms, p99 ${quantile(ms, 0.99).toFixed(1)} ms, ` +
        `max ${ms[ms.length - 1].toFixed(1)} ms`,
    );
  };
  report(
    "latency, Log returned -> row in the DOM (target: p99 <= 100 ms)",
    [...returned].map(([id, at]) => shown.get(id) - at),
  );
  report(
    "  of which Log returned -> event read by the page",
    [...returned].map(([id, at]) => arrived.get(id) - at),
  );
  report(
    "  of which event read -> row in the DOM",
    [...returned].map(([id]) => shown.get(id) - arrived.get(id)),
  );
}

/** Runs the load: unary Log calls from 2 clients (the bench's tail mode
 * starts a gateway of its own); resolves to its report line. */
async function load(gateway, vhost) {
  const bench = await run(
    BENCH,
    [
      "bench",
      "--mode",
      "unary",
      "--records",
      String(process.env.LOAD_RECORDS || 40000),
      "--concurrency",
      "2",
      "--skip-direct",
      "--server",
      gateway.grpc,
      "--history-queue",
      "loggate.history",
      "--amqp-url",
      vhost.url,
    ],
    { maxBuffer: 1 << 24 },
  );
  const line = bench.stdout.split("\n").find((l) => l.startsWith("gateway ("));
  return line ? line.replace(/\s+/g, " ") : bench.stdout;
}

/**
 * Frame gaps, long tasks and the renderer's main-thread time (CDP's
 * Performance metrics) while the load runs. `rows` is how many records the
 * list must hold before counting starts.
 */
async function frames(page, cdp, gateway, vhost, rows) {
  await page.evaluate((rows) => {
    const probe = { gaps: [], longTasks: [], from: 0, last: 0, rows: 0, start: 0, end: 0 };
    window.__probe = probe;
    new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) {
        if (probe.from && !probe.end) probe.longTasks.push(entry.duration);
      }
    }).observe({ type: "longtask", buffered: false });
    const tick = (t) => {
      if (probe.end) return;
      const count = Number(document.getElementById("count").textContent.replace(/\D/g, ""));
      if (!probe.from && count >= rows) probe.from = t;
      if (probe.from && probe.last) probe.gaps.push(t - probe.last);
      probe.last = t;
      probe.rows = count;
      requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
  }, rows);
  const metrics = async () =>
    Object.fromEntries(
      (await cdp.send("Performance.getMetrics")).metrics.map((m) => [m.name, m.value]),
    );
  const before = await metrics();
  const started = Date.now();
  const rate = await load(gateway, vhost);
  const after = await metrics();
  const seconds = (Date.now() - started) / 1000;
  const probe = await page.evaluate(() => {
    const p = window.__probe;
    p.end = 1;
    return {
      gaps: p.gaps,
      longTasks: p.longTasks,
      rows: p.rows,
      domRows: document.querySelectorAll(".row").length,
    };
  });
  const busy = (name) => (((after[name] || 0) - (before[name] || 0)) / seconds) * 100;
  return {
    rate,
    probe,
    seconds,
    task: busy("TaskDuration"),
    script: busy("ScriptDuration"),
    layout: busy("LayoutDuration") + busy("RecalcStyleDuration"),
  };
}

function describe(what, { rate, probe, seconds, task, script, layout }) {
  console.log(`${what}`);
  console.log(`  load: ${rate}`);
  const gaps = probe.gaps.slice().sort((a, b) => a - b);
  if (!gaps.length) {
    console.log(`  the list never held enough records (${probe.rows})`);
    return;
  }
  console.log(
    `  ${probe.rows} records in the list at the end, ${probe.domRows} row elements in the DOM; ` +
      `${gaps.length} frames in ${seconds.toFixed(0)} s: gap p50 ${quantile(gaps, 0.5).toFixed(1)} ms, ` +
      `p99 ${quantile(gaps, 0.99).toFixed(1)} ms, max ${gaps[gaps.length - 1].toFixed(1)} ms, ` +
      `${gaps.filter((g) => g > 100).length} over 100 ms; ${probe.longTasks.length} long tasks` +
      (probe.longTasks.length ? ` (longest ${Math.max(...probe.longTasks).toFixed(0)} ms)` : ""),
  );
  console.log(
    `  renderer main thread busy ${task.toFixed(1)}% of the time (script ${script.toFixed(1)}%, ` +
      `style and layout ${layout.toFixed(1)}%); load average ${loadavg()[0].toFixed(2)}`,
  );
}

async function responsiveness(page, gateway, vhost) {
  const cdp = await page.context().newCDPSession(page);
  await cdp.send("Performance.enable");
  // Control: the same load while the page's filter matches nothing, to show
  // what the machine itself does to frames.
  await page.locator("#f-service").fill("nothing-matches-this");
  await page.locator("#f-service").press("Enter");
  await page.locator('#conn[data-state="live"]').waitFor();
  describe(
    "control: the same load, the page showing nothing (what the machine does to frames)",
    await frames(page, cdp, gateway, vhost, 0),
  );
  await page.locator("#clear-filters").click();
  await page.locator('#conn[data-state="live"]').waitFor();
  describe(
    "responsiveness: every record shown, from the moment the list holds 10,000 (target: no frame over 100 ms)",
    await frames(page, cdp, gateway, vhost, 10000),
  );
}

function sizes() {
  const size = statSync(BIN).size;
  if (!process.env.MAIN_BIN) {
    console.log(`binary: ${BIN} is ${size} bytes (set MAIN_BIN to compare)`);
    return;
  }
  const main = statSync(process.env.MAIN_BIN).size;
  console.log(
    `binary: ${size} bytes against main's ${main}: ${size - main >= 0 ? "+" : ""}${size - main} bytes ` +
      `(${((size - main) / 1048576).toFixed(3)} MiB; target: <= 1 MB)`,
  );
}

const vhost = await createVhost();
const gateway = await startGateway({ amqpUrl: vhost.url, webPort: await freePort() });
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
});
try {
  const page = await browser.newPage({ viewport: { width: 1366, height: 768 } });
  await page.addInitScript(() => {
    window.__loggateShown = new Map();
    window.__loggateArrived = new Map();
  });
  await page.goto(gateway.web);
  await latency(page, gateway);
  await responsiveness(page, gateway, vhost);
  sizes();
} finally {
  await browser.close();
  await gateway.stop();
  await vhost.delete();
}
