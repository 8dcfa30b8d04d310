"use strict";

// The background sender that both transports use, against real gateways.

const test = require("node:test");
const assert = require("node:assert/strict");
const { createClient, createSender } = require("loggate");
const { inVhost, readHistory, waitForHistory, uniqueService, countBy, sleep } = require("./helpers");

test("one bad record never poisons a batch: the sender cuts what is too long and drops what is invalid", async () => {
  await inVhost(async (vhost) => {
    const gw = await vhost.gateway();
    const service = uniqueService("node-sanitize");
    const sender = createSender({ target: gw.address, service, node: "n1", flushInterval: 60000 });
    const client = createClient({ target: gw.address });
    try {
      const many = Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`k${i}`, i]));
      sender.send({ message: "plain", attributes: { n: 1 } });
      sender.send({ message: "é".repeat(40000) }); // 80,000 bytes: cut to 64 KiB, at a character boundary
      sender.send({ message: "many attributes", attributes: many });
      sender.send({ message: "long key", attributes: { ["k".repeat(200)]: "x", ok: "y" } });
      sender.send({ message: "long value", attributes: { v: "x".repeat(20000) } });
      sender.send({
        message: "bad fields",
        service: "no such/service!",
        node: "a\nb",
        traceId: "xyz",
        spanId: "0000000000000000",
        id: "i".repeat(65),
      });
      sender.send({ message: "bad span", traceId: "4BF92F3577B34DA6A3CE929D0E0E4736", spanId: "nope" });
      sender.send({ message: "bad time", time: "never" });
      assert.equal(await sender.flush(10000), true);
      const stats = sender.stats();
      assert.equal(stats.sent, 8);
      assert.equal(stats.failed, 0);

      const all = await readHistory(client);
      assert.equal(all.length, 8);
      const by = Object.fromEntries(all.map((r) => [r.message.startsWith("é") ? "cut" : r.message, r]));
      assert.equal(by.plain.service, service);
      assert.equal(by.plain.node, "n1");
      assert.deepEqual(by.plain.attributes, { n: "1" });

      assert.equal(Buffer.byteLength(by.cut.message), 65536);
      assert.equal(by.cut.message, "é".repeat(32768));
      assert.equal(by.cut.attributes["loggate.message_truncated"], "true");

      const m = by["many attributes"].attributes;
      assert.equal(Object.keys(m).length, 64);
      assert.equal(m["loggate.attributes_dropped"], "37"); // 100 - 63 kept
      assert.equal(m.k0, "0");

      assert.deepEqual(by["long key"].attributes, { ok: "y", "loggate.attributes_dropped": "1" });
      assert.equal(by["long value"].attributes.v, "x".repeat(8192));
      assert.equal(by["long value"].attributes["loggate.attributes_truncated"], "1");

      const bad = by["bad fields"];
      assert.equal(bad.service, "no_such_service_");
      assert.equal(bad.node, "a_b");
      assert.equal(bad.traceId, "");
      assert.equal(bad.spanId, "");
      assert.match(bad.id, /^[0-9a-f-]{36}$/);

      assert.equal(by["bad span"].traceId, "4bf92f3577b34da6a3ce929d0e0e4736");
      assert.equal(by["bad span"].spanId, "");
      assert.ok(Math.abs(by["bad time"].time - Date.now()) < 60000);
    } finally {
      await sender.close();
      await client.close();
    }
  });
});

test("a permanent refusal is reported once and dropped; the rest of its batch is delivered", async () => {
  await inVhost(async (vhost) => {
    // This gateway takes shorter messages than the sender cuts to.
    const gw = await vhost.gateway({ args: ["--max-message-bytes", "1024"] });
    const service = uniqueService("node-refused");
    const errors = [];
    const sender = createSender({
      target: gw.address,
      service,
      flushInterval: 60000,
      onError: (err) => errors.push(err),
    });
    const client = createClient({ target: gw.address });
    try {
      for (let i = 0; i < 10; i++) {
        sender.send({ message: i === 3 || i === 7 ? "x".repeat(2000) : `m${i}`, attributes: { seq: i } });
      }
      assert.equal(await sender.flush(10000), true);
      const stats = sender.stats();
      assert.equal(stats.failed, 2);
      assert.equal(stats.sent, 8);
      assert.equal(stats.queued, 0);
      assert.equal(errors.length, 1, "reported once per interval");
      assert.equal(errors[0].code, 3);
      assert.match(errors[0].message, /INVALID_ARGUMENT/);
      const records = await readHistory(client, { services: [service] });
      assert.deepEqual(
        records.map((r) => Number(r.attributes.seq)),
        [0, 1, 2, 4, 5, 6, 8, 9],
      );
    } finally {
      await sender.close();
      await client.close();
    }
  });
});

test("a full queue drops and counts, warns once per interval, and delivers what it kept", async () => {
  await inVhost(async (vhost) => {
    const first = await vhost.gateway();
    const address = first.address;
    await first.stop(); // nothing listens there now
    const service = uniqueService("node-full");
    const sender = createSender({
      target: address,
      service,
      queueSize: 100,
      backoff: { initial: 50, max: 300 },
      reconnectBackoff: { initial: 100, max: 300 },
    });
    const warnings = [];
    const write = process.stderr.write;
    process.stderr.write = function (chunk, ...rest) {
      if (String(chunk).startsWith("loggate:")) {
        warnings.push(String(chunk));
        return true;
      }
      return write.call(this, chunk, ...rest);
    };
    let accepted = 0;
    try {
      for (let i = 0; i < 250; i++) if (sender.send({ message: `m${i}`, attributes: { seq: i } })) accepted++;
      await sleep(300); // some failed attempts in the background
      for (let i = 250; i < 260; i++) if (sender.send({ message: `m${i}`, attributes: { seq: i } })) accepted++;
    } finally {
      process.stderr.write = write;
    }
    const client = createClient({ target: address });
    try {
      assert.equal(accepted, 100);
      let stats = sender.stats();
      assert.equal(stats.dropped, 160);
      assert.equal(stats.queued, 100);
      const full = warnings.filter((w) => w.includes("queue full"));
      assert.equal(full.length, 1, `one warning per interval, got: ${warnings.join("")}`);
      assert.match(full[0], /dropped 1 record/); // the first drop warns at once; the rest wait for the next interval

      await vhost.gateway({ listen: address });
      assert.equal(await sender.flush(15000), true);
      stats = sender.stats();
      assert.equal(stats.sent, 100);
      const records = await readHistory(client, { services: [service] });
      assert.deepEqual(
        records.map((r) => Number(r.attributes.seq)),
        Array.from({ length: 100 }, (_, i) => i),
      );
    } finally {
      await sender.close();
      await client.close();
    }
  });
});

test("close() delivers what is queued", async () => {
  await inVhost(async (vhost) => {
    const gw = await vhost.gateway();
    const service = uniqueService("node-close");
    // A batch would wait a minute to fill: only close() sends these.
    const sender = createSender({ target: gw.address, service, flushInterval: 60000, batchSize: 1000 });
    const client = createClient({ target: gw.address });
    try {
      for (let i = 0; i < 300; i++) sender.send({ message: `m${i}` });
      await sleep(200);
      assert.equal(sender.stats().sent, 0);
      const stats = await sender.close();
      assert.equal(stats.sent, 300);
      assert.equal(stats.queued, 0);
      assert.equal(sender.send({ message: "late" }), false);
      assert.equal((await readHistory(client, { services: [service] })).length, 300);
    } finally {
      await client.close();
    }
  });
});

test("two targets: the sender keeps delivering when one gateway is kill -9'd under load", async (t) => {
  await inVhost(async (vhost) => {
    const a = await vhost.gateway();
    const b = await vhost.gateway();
    const byAddress = new Map([
      [a.address, a],
      [b.address, b],
    ]);
    const service = uniqueService("node-failover");
    const sender = createSender({ target: [a.address, b.address], service, flushInterval: 20 });
    const client = createClient({ target: [a.address, b.address] });
    const total = 3000;
    try {
      // ~1,500 records/s for 2 s; the gateway it sends to dies after 0.7 s.
      let i = 0;
      let killed = null;
      const started = Date.now();
      while (i < total) {
        for (let k = 0; k < 30 && i < total; k++, i++) {
          assert.ok(sender.send({ message: `m${i}`, attributes: { seq: i } }));
        }
        if (!killed && Date.now() - started > 700) {
          killed = sender.stats().target;
          await byAddress.get(killed).kill();
        }
        await sleep(20);
      }
      assert.ok(killed, "a gateway was killed");
      assert.equal(await sender.flush(20000), true);
      const stats = sender.stats();
      assert.equal(stats.sent, total);
      assert.equal(stats.dropped + stats.failed, 0);
      assert.notEqual(stats.target, killed);

      const records = await waitForHistory(
        client,
        { services: [service] },
        (rs) => new Set(rs.map((r) => r.attributes.seq)).size >= total,
      );
      const seqs = countBy(records.map((r) => Number(r.attributes.seq)));
      assert.equal(seqs.size, total, "every record arrived");
      // A record in flight when the gateway died may arrive twice, always with the same id.
      const idsBySeq = new Map();
      for (const r of records) {
        const seq = Number(r.attributes.seq);
        if (!idsBySeq.has(seq)) idsBySeq.set(seq, new Set());
        idsBySeq.get(seq).add(r.id);
      }
      for (const [seq, ids] of idsBySeq) assert.equal(ids.size, 1, `record ${seq} arrived under ${ids.size} ids`);
      t.diagnostic(`retried ${stats.retried}, ${records.length - total} duplicate(s) by id`);
    } finally {
      await sender.close();
      await client.close();
    }
  });
});
