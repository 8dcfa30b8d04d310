"use strict";

// The TypeScript declarations (index.d.ts, pino.d.ts, winston.d.ts), as the
// installed package gives them, type-check a small usage file (tsc --noEmit).

const test = require("node:test");
const assert = require("node:assert/strict");
const path = require("node:path");
const { execFile } = require("node:child_process");

test("the TypeScript declarations type-check a usage file", async () => {
  const tsc = require.resolve("typescript/bin/tsc");
  const result = await new Promise((resolve) =>
    execFile(process.execPath, [tsc, "-p", path.join(__dirname, "types")], { timeout: 120000 }, (err, stdout, stderr) =>
      resolve({ code: err ? err.code : 0, out: stdout + stderr }),
    ),
  );
  assert.equal(result.code, 0, result.out);
});
