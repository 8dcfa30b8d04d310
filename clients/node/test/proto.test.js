"use strict";

// The package ships its own copy of the wire contract; it must be the
// repository's proto/loggate/v1/loggate.proto byte for byte (npm run
// sync-proto copies it), both in the source tree and in the installed package.
// And the package's entry points resolve as a user's project sees them.

const test = require("node:test");
const assert = require("node:assert/strict");
const fs = require("node:fs");
const path = require("node:path");
const { REPO } = require("./helpers");

const SOURCE = process.env.LOGGATE_PACKAGE_SRC || path.resolve(__dirname, "..");
const CONTRACT = path.join(REPO, "proto", "loggate", "v1", "loggate.proto");
const COPY = path.join("proto", "loggate", "v1", "loggate.proto");

test("the package's proto is the repository's, byte for byte (source and installed)", () => {
  const contract = fs.readFileSync(CONTRACT);
  const source = fs.readFileSync(path.join(SOURCE, COPY));
  assert.ok(contract.equals(source), `${path.join(SOURCE, COPY)} differs from ${CONTRACT}: run npm run sync-proto`);
  const installed = path.join(path.dirname(require.resolve("loggate/package.json")), COPY);
  assert.ok(contract.equals(fs.readFileSync(installed)), `${installed} differs from ${CONTRACT}`);
});

test("require() and import() of loggate, loggate/pino and loggate/winston", async () => {
  const main = require("loggate");
  assert.equal(typeof main.createClient, "function");
  assert.equal(typeof main.createSender, "function");
  assert.equal(typeof require("loggate/pino"), "function");
  assert.equal(typeof require("loggate/winston").LoggateTransport, "function");

  const esm = await import("loggate");
  assert.equal(esm.createClient, main.createClient);
  const esmPino = await import("loggate/pino");
  assert.equal(typeof esmPino.default, "function");
  const esmWinston = await import("loggate/winston");
  assert.equal(esmWinston.LoggateTransport, require("loggate/winston").LoggateTransport);
  // Installed, not the source tree.
  assert.ok(require.resolve("loggate").includes(`${path.sep}node_modules${path.sep}loggate${path.sep}`));
});
