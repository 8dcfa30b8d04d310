"use strict";

// The promise client and the resuming tail, against real gateways.

const test = require("node:test");
const assert = require("node:assert/strict");
const { createClient } = require("loggate");
const { inVhost, readHistory, uniqueService, countBy, sleep, withTimeout, waitUntil } = require("./helpers");

const TRACE = "4bf92f3577b34da6a3ce929d0e0e4736";
const SPAN = "00f067aa0ba902b7";

test("log and logBatch: records arrive with the right fields", async () => {
  await inVhost(async (vhost) => {
    const gw = await vhost.gateway();
    const client = createClient({ target: gw.address });
    try {
      const service = uniqueService("node-log");
      const time = new Date("2030-01-02T03:04:05.678Z");
      const one = await client.log({
        service,
        node: "node-1",
        level: "warn",
        message: "disk almost full",
        time,
        attributes: { disk: "/var", used: 93, opts: { ro: false } },
        traceId: TRACE,
        spanId: SPAN,
      });
      assert.equal(one.spooled, false);
      assert.match(one.id, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-/); // a client-made UUIDv7

      const batch = await client.logBatch([
        { service, message: "step 1" },
        { service, message: "step 2", level: "error", id: "my-own-id-42" },
        { service, message: "step 3", level: "debug" },
      ]);
      assert.equal(batch.ids.length, 3);
      assert.equal(batch.ids[1], "my-own-id-42");

      const records = await readHistory(client, { services: [service] });
      assert.equal(records.length, 4);
      const [r, ...rest] = records;
      assert.equal(r.id, one.id);
      assert.equal(r.service, service);
      assert.equal(r.node, "node-1");
      assert.equal(r.level, "warn");
      assert.equal(r.message, "disk almost full");
      assert.equal(r.time.toISOString(), time.toISOString());
      assert.deepEqual(r.attributes, { disk: "/var", used: "93", opts: '{"ro":false}' });
      assert.equal(r.traceId, TRACE);
      assert.equal(r.spanId, SPAN);
      assert.equal(r.gateway, gw.instance);
      assert.ok(r.receivedTime instanceof Date);
      assert.ok(r.resumeToken);
      assert.deepEqual(
        rest.map((x) => [x.id, x.message, x.level]),
        [
          [batch.ids[0], "step 1", "info"],
          ["my-own-id-42", "step 2", "error"],
          [batch.ids[2], "step 3", "debug"],
        ],
      );

      // A record the gateway refuses comes back as its error.
      await assert.rejects(client.log({ service: "not a service", message: "x" }), (err) => {
        assert.equal(err.code, 3); // INVALID_ARGUMENT
        assert.match(err.details, /^record\.service/);
        return true;
      });
    } finally {
      await client.close();
    }
  });
});

test("a tail resumes across a gateway restart without gap or duplicate", async () => {
  await inVhost(async (vhost) => {
    const first = await vhost.gateway();
    const service = uniqueService("node-tail");
    const client = createClient({ target: first.address, reconnectBackoff: { initial: 100, max: 500 } });
    const batch = (from, to) =>
      client.logBatch(
        Array.from({ length: to - from }, (_, k) => ({
          service,
          message: `m${from + k}`,
          attributes: { seq: from + k },
        })),
      );
    const reconnects = [];
    const tail = client.tail(
      { services: [service], fromBeginning: true },
      // A small buffer: the tail pauses the call, so most of the first 200
      // records are still on the gateway's side when it stops, and only the
      // resume token can get them without a gap or a repeat.
      { highWaterMark: 4, backoff: { initial: 100, max: 500 }, onReconnect: (info) => reconnects.push(info) },
    );
    const it = tail[Symbol.asyncIterator]();
    const seen = [];
    const take = async (n) => {
      while (seen.length < n) {
        const next = await withTimeout(it.next(), 20000, `the tail, after ${seen.length} records`);
        assert.ok(!next.done, "the tail ended");
        seen.push(Number(next.value.attributes.seq));
      }
    };
    try {
      await batch(0, 200);
      await take(20);
      await first.stop(); // SIGTERM: the tail ends with UNAVAILABLE
      const second = await vhost.gateway({ listen: first.address }); // same vhost, same address
      await retryUnavailable(() => batch(200, 300)); // until the channel has reconnected
      await take(300);
      assert.deepEqual(
        seen,
        Array.from({ length: 300 }, (_, i) => i),
      );
      assert.ok(reconnects.length >= 1, "the tail reconnected");
      assert.equal(tail.target, second.address);
    } finally {
      tail.cancel();
      await client.close();
    }
  });
});

test("a live tail that has received nothing yet misses nothing written while it reconnects", async () => {
  await inVhost(async (vhost) => {
    const args = ["--tail-heartbeat", "300ms"];
    const first = await vhost.gateway({ args });
    const service = uniqueService("node-live");
    const client = createClient({ target: first.address, reconnectBackoff: { initial: 100, max: 300 } });
    const heartbeats = [];
    const tail = client.tail(
      { services: [service] },
      { backoff: { initial: 100, max: 300 }, onHeartbeat: (beat) => heartbeats.push(beat) },
    );
    const seen = [];
    const reading = (async () => {
      for await (const r of tail) {
        seen.push(r.message);
        if (seen.length === 10) break;
      }
    })();
    const other = createClient({ target: first.address });
    try {
      await waitUntil(() => heartbeats.length > 0, 10000, "a heartbeat"); // attached
      // Another service's record: the heartbeats then carry a head_time.
      await other.log({ service: "someone-else", message: "not for this tail" });
      await waitUntil(() => heartbeats.some((b) => b.headTime), 10000, "a heartbeat with a head time");
      await first.stop();
      // Written through another gateway while the tail's one is down.
      const second = await vhost.gateway({ args });
      const writer = createClient({ target: second.address });
      for (let i = 0; i < 10; i++) await writer.log({ service, message: `m${i}` });
      await writer.close();
      await vhost.gateway({ listen: first.address, args });
      await withTimeout(reading, 20000, `the tail, after ${seen.length} records`);
      assert.deepEqual(
        seen,
        Array.from({ length: 10 }, (_, i) => `m${i}`),
      );
    } finally {
      tail.cancel();
      await other.close();
      await client.close();
    }
  });
});

test("two targets: log fails over and a tail resumes on the other gateway when one is kill -9'd", async () => {
  await inVhost(async (vhost) => {
    const a = await vhost.gateway();
    const b = await vhost.gateway();
    const byAddress = new Map([
      [a.address, a],
      [b.address, b],
    ]);
    const service = uniqueService("node-failover");
    // A comma-separated list, as an environment variable would give it.
    const client = createClient({ target: `${a.address},${b.address}` });
    const tail = client.tail({ services: [service] }, { backoff: { initial: 50, max: 500 } });
    const seen = [];
    const reading = (async () => {
      for await (const r of tail) {
        seen.push(r);
        if (seen.length === 200) break;
      }
    })();
    try {
      await sleep(500); // the live tail attaches
      for (let i = 0; i < 100; i++) await client.log({ service, message: `m${i}`, attributes: { seq: i } });
      await waitUntil(() => seen.length === 100, 15000);
      const tailOn = tail.target;
      const victim = byAddress.get(tailOn);
      await victim.kill(); // kill -9: no goodbye
      // The client's calls land on the survivor (one of them finds the dead one first).
      for (let i = 100; i < 200; i++) await client.log({ service, message: `m${i}`, attributes: { seq: i } });
      await withTimeout(reading, 20000, `the tail, after ${seen.length} records`);
      assert.deepEqual(
        seen.map((r) => Number(r.attributes.seq)),
        Array.from({ length: 200 }, (_, i) => i),
      );
      assert.notEqual(tail.target, tailOn, "the tail moved to the other gateway");
      const ids = countBy(seen.map((r) => r.id));
      assert.equal(ids.size, 200);
    } finally {
      tail.cancel();
      await client.close();
    }
  });
});

/** `fn()`, again while it fails with UNAVAILABLE (a channel that has not reconnected yet), for up to 10 s. */
async function retryUnavailable(fn) {
  const deadline = Date.now() + 10000;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (err.code !== 14 || Date.now() > deadline) throw err;
      await sleep(100);
    }
  }
}

test("TLS (a CA given as a path, PEM text or Buffer) and a bearer token", async (t) => {
  const fs = require("node:fs");
  const os = require("node:os");
  const path = require("node:path");
  const crypto = require("node:crypto");
  const { execFileSync } = require("node:child_process");
  const grpc = require("@grpc/grpc-js");
  const { createSender } = require("loggate");

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "loggate-nodetest-tls-"));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = (name) => path.join(dir, name);
  const openssl = (...args) => execFileSync("openssl", args, { stdio: "pipe" });
  openssl(
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-days",
    "2",
    "-subj",
    "/CN=loggate test CA",
    "-keyout",
    file("ca.key"),
    "-out",
    file("ca.pem"),
  );
  openssl(
    "req",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-subj",
    "/CN=localhost",
    "-keyout",
    file("server.key"),
    "-out",
    file("server.csr"),
  );
  fs.writeFileSync(file("ext"), "subjectAltName=DNS:localhost,IP:127.0.0.1\n");
  openssl(
    "x509",
    "-req",
    "-in",
    file("server.csr"),
    "-CA",
    file("ca.pem"),
    "-CAkey",
    file("ca.key"),
    "-CAcreateserial",
    "-days",
    "2",
    "-extfile",
    file("ext"),
    "-out",
    file("server.pem"),
  );
  const token = `lgt_${crypto.randomBytes(32).toString("hex")}`;
  const sha = crypto.createHash("sha256").update(token).digest("hex");
  fs.writeFileSync(
    file("auth.toml"),
    `[[principal]]\nname = "nodetest"\ntoken_sha256 = "${sha}"\nlog = ["*"]\ntail = ["*"]\n`,
  );
  const ca = fs.readFileSync(file("ca.pem"));

  await inVhost(async (vhost) => {
    const gw = await vhost.gateway({
      args: ["--tls-cert", file("server.pem"), "--tls-key", file("server.key"), "--auth-file", file("auth.toml")],
      credentials: grpc.credentials.createSsl(ca),
    });
    const target = `localhost:${gw.port}`;
    const service = uniqueService("node-tls");
    const clients = [
      createClient({ target, token, tls: { ca: file("ca.pem") } }),
      createClient({ target, token, tls: { ca: ca.toString("utf8") } }),
      createClient({ target: `https://127.0.0.1:${gw.port}`, token, tls: { ca, serverName: "localhost" } }),
    ];
    const anonymous = createClient({ target, tls: { ca } });
    const sender = createSender({ target, token, tls: { ca }, service });
    try {
      for (const [i, client] of clients.entries()) await client.log({ service, message: `client ${i}` });
      sender.send({ message: "sender" });
      assert.equal(await sender.flush(10000), true);
      await assert.rejects(anonymous.log({ service, message: "anonymous" }), (err) => err.code === 16); // UNAUTHENTICATED
      const records = await readHistory(clients[0], { services: [service] });
      assert.deepEqual(records.map((r) => r.message).sort(), ["client 0", "client 1", "client 2", "sender"]);
      assert.ok(records.every((r) => r.principal === "nodetest"));
    } finally {
      await sender.close();
      for (const c of [...clients, anonymous]) await c.close();
    }
  });
});
