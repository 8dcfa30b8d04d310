"use strict";

// The package's JavaScript and TypeScript is formatted with prettier
// (npm run format writes it).

const test = require("node:test");
const assert = require("node:assert/strict");
const path = require("node:path");
const { execFile } = require("node:child_process");

const SOURCE = process.env.LOGGATE_PACKAGE_SRC || path.resolve(__dirname, "..");

test("the package's sources are formatted with prettier", async () => {
  const prettier = require.resolve("prettier/bin/prettier.cjs");
  const result = await new Promise((resolve) =>
    execFile(process.execPath, [prettier, "--check", "."], { cwd: SOURCE, timeout: 120000 }, (err, stdout, stderr) =>
      resolve({ code: err ? err.code : 0, out: stdout + stderr }),
    ),
  );
  assert.equal(result.code, 0, `run npm run format in ${SOURCE}:\n${result.out}`);
});
