// A real gateway for each test: `loggate serve` as a child process in a
// RabbitMQ vhost of its own (deleted afterwards, with everything in it), its
// web page on a free port, and the CLI (`loggate log`) to write records.
import { execFile, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { promisify } from "node:util";

const run = promisify(execFile);
const here = new URL(".", import.meta.url).pathname;
/** The gateway binary: $LOGGATE_BIN, else the debug build at the repo top. */
export const BIN = resolve(here, "../..", process.env.LOGGATE_BIN || "target/debug/loggate");
const RABBITMQCTL = process.env.RABBITMQCTL || "rabbitmqctl";

/** Gateways started and not yet exited: killed if this process exits first. */
const running = new Set();
const killAll = () => {
  for (const child of running) child.kill("SIGKILL");
};
process.once("exit", killAll);
// Playwright stops a worker with a signal, which skips "exit" handlers.
for (const signal of ["SIGTERM", "SIGINT"]) {
  process.once(signal, () => {
    killAll();
    process.exit(1);
  });
}

const unique = (what) => `${what}-${process.pid}-${Date.now()}-${Math.floor(Math.random() * 1e6)}`;

/** A free loopback port: bound, read, released. */
export function freePort() {
  return new Promise((ok, fail) => {
    const server = createServer();
    server.once("error", fail);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => ok(port));
    });
  });
}

const sleep = (ms) => new Promise((ok) => setTimeout(ok, ms));

/** A vhost that `guest` may use, for one test. */
export async function createVhost() {
  const name = unique("loggate-browser");
  await run(RABBITMQCTL, ["add_vhost", name]);
  await run(RABBITMQCTL, ["set_permissions", "-p", name, "guest", ".*", ".*", ".*"]);
  return {
    name,
    url: `amqp://guest:guest@127.0.0.1:5672/${encodeURIComponent(name)}`,
    delete: () => run(RABBITMQCTL, ["delete_vhost", name]).catch(() => {}),
  };
}

/**
 * Starts `loggate serve` on `amqpUrl` with its web page on `webPort`, and
 * waits until the page's API answers (the gateway is connected).
 */
export async function startGateway({ amqpUrl, webPort, extra = [] }) {
  const dir = mkdtempSync(join(tmpdir(), "loggate-browser-"));
  const addressFile = join(dir, "address");
  const args = [
    "serve",
    "--listen",
    "127.0.0.1:0",
    "--address-file",
    addressFile,
    "--http-listen",
    `127.0.0.1:${webPort}`,
    "--amqp-url",
    amqpUrl,
    "--instance",
    "browser-test",
    "--shutdown-grace",
    "2s",
    ...extra,
  ];
  const child = spawn(BIN, args, { stdio: ["ignore", "ignore", "pipe"] });
  running.add(child);
  child.once("exit", () => running.delete(child));
  let stderr = "";
  child.stderr.on("data", (chunk) => (stderr += chunk));
  const exited = new Promise((ok) => child.once("exit", ok));
  const web = `http://127.0.0.1:${webPort}`;
  let grpc = "";
  for (let i = 0; ; i += 1) {
    if (child.exitCode !== null) throw new Error(`loggate exited: ${stderr}`);
    if (i > 300) throw new Error(`loggate did not start in 30 s: ${stderr}`);
    try {
      grpc = grpc || `http://${readFileSync(addressFile, "utf8").trim()}`;
      // 503 until the gateway has reached RabbitMQ (before any token check).
      const res = await fetch(`${web}/api/stats`, {
        headers: { authorization: "Bearer x" },
      });
      if (res.status !== 503) break;
    } catch {
      // Not listening yet.
    }
    await sleep(100);
  }
  return {
    web,
    grpc,
    get stderr() {
      return stderr;
    },
    /** Logs one record with the CLI; resolves to its id once `log` returned. */
    async log(service, message, { level = "info", node, attrs = {}, traceId, token } = {}) {
      const args = ["log", "--server", grpc, "--service", service, "--level", level];
      if (node) args.push("--node", node);
      if (traceId) args.push("--trace-id", traceId);
      if (token) args.push("--token", token);
      for (const [k, v] of Object.entries(attrs)) args.push("--attr", `${k}=${v}`);
      args.push("--", message);
      const { stdout } = await run(BIN, args);
      return stdout.trim();
    },
    /** SIGTERM, and waits for the process to exit. */
    async stop() {
      if (child.exitCode === null) child.kill("SIGTERM");
      await exited;
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
