"use strict";

// The tests' harness: a fresh RabbitMQ vhost per test (rabbitmqctl), the
// real gateway binary started in it on a port of its own choosing
// (--listen 127.0.0.1:0 --address-file), waited for until gRPC health says
// SERVING, stopped with SIGTERM (or killed with SIGKILL) after; and a
// history reader (Tail from_beginning + history_only) to check what arrived.

const { spawn, execFile } = require("node:child_process");
const crypto = require("node:crypto");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { promisify } = require("node:util");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const execFileP = promisify(execFile);

const REPO = process.env.LOGGATE_REPO || path.resolve(__dirname, "..", "..", "..");
const LOGGATE_BIN = process.env.LOGGATE_BIN || path.join(REPO, "target", "debug", "loggate");
const AMQP_BASE = "amqp://guest:guest@127.0.0.1:5672";
const STARTUP_TIMEOUT = 30000;

const health = grpc.loadPackageDefinition(
  protoLoader.loadSync(path.join(__dirname, "health.proto"), { enums: String, defaults: true }),
).grpc.health.v1.Health;

// Gateways still running when the test process exits (a test that was
// killed, or forgot one) go with it.
const running = new Set();
process.on("exit", () => {
  for (const child of running) child.kill("SIGKILL");
});

function tag() {
  return crypto.randomBytes(6).toString("hex");
}

async function rabbitmqctl(...args) {
  await execFileP("rabbitmqctl", args, { timeout: 60000 });
}

/** A fresh vhost guest may use; `await v.delete()` after. */
async function createVhost() {
  const name = `loggate-nodetest-${tag()}`;
  await rabbitmqctl("add_vhost", name);
  try {
    await rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*");
  } catch (err) {
    await rabbitmqctl("delete_vhost", name).catch(() => {});
    throw err;
  }
  return {
    name,
    async delete() {
      await rabbitmqctl("delete_vhost", name);
    },
  };
}

function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Starts `loggate serve` in `vhost`. `listen` defaults to 127.0.0.1:0;
 * give the port of a stopped gateway to start its successor at the same
 * address. Resolves once the address file is written and health is SERVING.
 */
async function startGateway(vhost, { listen = "127.0.0.1:0", instance, args = [], credentials } = {}) {
  if (!fs.existsSync(LOGGATE_BIN)) throw new Error(`no loggate binary at ${LOGGATE_BIN} (set LOGGATE_BIN)`);
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), "loggate-nodetest-"));
  const addressFile = path.join(scratch, "address");
  const logPath = path.join(scratch, "gateway.log");
  const log = fs.openSync(logPath, "w");
  const name = instance || `nodetest-gw-${tag()}`;
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("LOGGATE_")));
  const child = spawn(
    LOGGATE_BIN,
    [
      "serve",
      "--listen",
      listen,
      "--address-file",
      addressFile,
      "--amqp-url",
      `${AMQP_BASE}/${encodeURIComponent(vhost.name)}`,
      "--instance",
      name,
      "--broker-wait",
      "10s",
      "--shutdown-grace",
      "3s",
      ...args,
    ],
    { stdio: ["ignore", log, log], env },
  );
  fs.closeSync(log);
  running.add(child);
  let exited = null;
  const exit = new Promise((resolve) =>
    child.on("exit", (code, signal) => {
      running.delete(child);
      resolve((exited = { code, signal }));
    }),
  );
  const failed = (why) => new Error(`loggate ${why}:\n${fs.readFileSync(logPath, "utf8")}`);

  const deadline = Date.now() + STARTUP_TIMEOUT;
  while (!fs.existsSync(addressFile)) {
    if (exited) throw failed(`exited (${JSON.stringify(exited)}) while starting`);
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw failed("wrote no address file in time");
    }
    await sleep(50);
  }
  const address = fs.readFileSync(addressFile, "utf8").trim();
  const checker = new health(address, credentials || grpc.credentials.createInsecure(), {
    "grpc.ssl_target_name_override": "localhost",
  });
  try {
    for (;;) {
      if (exited) throw failed(`exited (${JSON.stringify(exited)}) while starting`);
      const reply = await new Promise((resolve) =>
        checker.Check({}, { deadline: Date.now() + 1000 }, (err, r) => resolve(err ? null : r)),
      );
      if (reply && reply.status === "SERVING") break;
      if (Date.now() > deadline) {
        child.kill("SIGKILL");
        throw failed("not SERVING in time");
      }
      await sleep(100);
    }
  } finally {
    checker.close();
  }

  return {
    address,
    port: Number(address.split(":").pop()),
    instance: name,
    process: child,
    logPath,
    /** SIGTERM, and wait for the exit. */
    async stop() {
      if (!exited) {
        child.kill("SIGTERM");
        const t = setTimeout(() => child.kill("SIGKILL"), 15000);
        await exit;
        clearTimeout(t);
      }
      fs.rmSync(scratch, { recursive: true, force: true });
    },
    /** kill -9, and wait for the exit. */
    async kill() {
      if (!exited) {
        child.kill("SIGKILL");
        await exit;
      }
    },
  };
}

/**
 * Runs `fn(vhost)` in a fresh vhost and deletes the vhost after, whatever
 * happens; gateways registered with `track` are stopped first.
 */
async function inVhost(fn) {
  const vhost = await createVhost();
  const gateways = [];
  vhost.track = (gw) => (gateways.push(gw), gw);
  vhost.gateway = async (opts) => vhost.track(await startGateway(vhost, opts));
  try {
    return await fn(vhost);
  } finally {
    for (const gw of gateways) await gw.stop().catch(() => {});
    await vhost.delete();
  }
}

/**
 * Everything in the history (Tail from_beginning + history_only), as public
 * records, through a client of the package under test.
 */
async function readHistory(client, filters = {}) {
  const out = [];
  for await (const r of client.tail({ fromBeginning: true, historyOnly: true, ...filters })) out.push(r);
  return out;
}

/** Polls the history until `done(records)` or `timeout` ms; returns the last read. */
async function waitForHistory(client, filters, done, timeout = 20000) {
  const deadline = Date.now() + timeout;
  let records = [];
  for (;;) {
    records = await readHistory(client, filters);
    if (done(records) || Date.now() > deadline) return records;
    await sleep(200);
  }
}

/** `promise`, or a rejection naming `what` after `ms` (the timer is cleared either way). */
async function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Waits until `cond()` is true, polling, for at most `ms`. */
async function waitUntil(cond, ms, what = "condition") {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(50);
  }
}

/** Runs `node fixtures/<name>` with `env` added; resolves { code, signal, stdout, stderr, ms }. */
function runApp(name, env, timeout = 30000) {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const child = execFile(
      process.execPath,
      [path.join(__dirname, "fixtures", name)],
      { env: { ...process.env, ...env }, timeout, killSignal: "SIGKILL" },
      (err, stdout, stderr) => {
        const result = { code: child.exitCode, signal: child.signalCode, stdout, stderr, ms: Date.now() - started };
        if (err && err.killed) reject(new Error(`${name} did not exit within ${timeout} ms:\n${stderr}`));
        else resolve(result);
      },
    );
  });
}

function uniqueService(prefix) {
  return `${prefix}-${tag()}`;
}

/** Counts of each value. */
function countBy(values) {
  const m = new Map();
  for (const v of values) m.set(v, (m.get(v) || 0) + 1);
  return m;
}

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

module.exports = {
  REPO,
  LOGGATE_BIN,
  createVhost,
  startGateway,
  inVhost,
  readHistory,
  waitForHistory,
  uniqueService,
  countBy,
  percentile,
  sleep,
  withTimeout,
  waitUntil,
  runApp,
};
