"use strict";

// The wire contract, loaded at run time from the copy this package ships
// (proto/loggate/v1/loggate.proto; `npm run sync-proto` refreshes it from the
// repository's proto/). google/protobuf/{timestamp,duration}.proto come from
// the definitions protobufjs carries, so nothing else is needed on disk.

const path = require("node:path");
const grpc = require("@grpc/grpc-js");
const protoLoader = require("@grpc/proto-loader");

const PROTO_DIR = path.join(__dirname, "..", "proto");
const PROTO_FILE = "loggate/v1/loggate.proto";

let loaded = null;

/** The LogGateway client constructor and the package definition (loaded once). */
function load() {
  if (loaded) return loaded;
  const definition = protoLoader.loadSync(PROTO_FILE, {
    includeDirs: [PROTO_DIR],
    keepCase: true, // wire names (trace_id, resume_token) inside; the public API is camelCase
    longs: Number,
    enums: String,
    defaults: true,
    oneofs: true,
  });
  const pkg = grpc.loadPackageDefinition(definition);
  loaded = { definition, LogGateway: pkg.loggate.v1.LogGateway };
  return loaded;
}

module.exports = { load, PROTO_DIR, PROTO_FILE };
