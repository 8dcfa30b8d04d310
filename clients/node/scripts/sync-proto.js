#!/usr/bin/env node
// Copies the wire contract, ../../proto/loggate/v1/loggate.proto, into this
// package (proto/loggate/v1/), which ships it and loads it at run time.
// test/proto.test.js fails while the two differ. Run: npm run sync-proto
"use strict";

const fs = require("node:fs");
const path = require("node:path");

const from = path.join(__dirname, "..", "..", "..", "proto", "loggate", "v1", "loggate.proto");
const to = path.join(__dirname, "..", "proto", "loggate", "v1", "loggate.proto");

fs.mkdirSync(path.dirname(to), { recursive: true });
fs.copyFileSync(from, to);
console.log(`copied ${path.relative(process.cwd(), from)} -> ${path.relative(process.cwd(), to)}`);
