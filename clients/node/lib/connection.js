"use strict";

// Where the gateways are and how to reach them: the target list, TLS and the
// token, and one gRPC client (channel) per target. Failover is ours: calls go
// to the current target; a failure that says "this gateway is not there"
// moves every caller to the next one. The first is picked at random, so many
// processes given the same list spread over the gateways.

const fs = require("node:fs");
const grpc = require("@grpc/grpc-js");
const { load } = require("./proto");
const { version } = require("../package.json");

// Targets grpc-js reads as one name for several addresses (its own
// multi-address syntax): passed through whole, never split at commas.
const NATIVE_SCHEME = /^(ipv4|ipv6|unix|unix-abstract|vsock):/i;

/**
 * The target option as a list of {address, tls}: an array, or a string of
 * comma-separated entries; each `host:port`, `dns:///host:port`, or
 * `http://host:port` (plaintext) / `https://host:port` (TLS with the system's
 * roots unless `tls` says otherwise).
 */
function parseTargets(target) {
  if (target === undefined || target === null || target === "") {
    throw new TypeError('loggate: `target` is required ("host:port", "a:port,b:port" or an array)');
  }
  const raw = Array.isArray(target)
    ? target
    : NATIVE_SCHEME.test(String(target))
      ? [String(target)]
      : String(target).split(",");
  const targets = [];
  for (const item of raw) {
    const entry = String(item).trim();
    if (entry === "") continue;
    const m = /^(https?):\/\/([^/]+)\/?$/i.exec(entry);
    if (m) targets.push({ address: m[2], https: m[1].toLowerCase() === "https" });
    else targets.push({ address: entry, https: false });
  }
  if (targets.length === 0) throw new TypeError("loggate: `target` names no gateway");
  return targets;
}

/** A PEM given as a Buffer, the PEM text itself, or a path to a file. */
function pem(value, what) {
  if (value === undefined || value === null) return null;
  if (Buffer.isBuffer(value)) return value;
  if (value instanceof Uint8Array) return Buffer.from(value);
  const s = String(value);
  if (s.includes("-----BEGIN")) return Buffer.from(s);
  try {
    return fs.readFileSync(s);
  } catch (err) {
    throw new TypeError(`loggate: tls.${what}: neither PEM text nor a readable file: ${err.message}`);
  }
}

function credentialsFor(tls, https) {
  if (tls === undefined || tls === null) tls = https;
  if (tls === false) return grpc.credentials.createInsecure();
  if (tls === true) return grpc.credentials.createSsl();
  if (typeof tls !== "object") throw new TypeError("loggate: `tls` is false, true, or { ca, cert, key, serverName }");
  const ca = pem(tls.ca, "ca");
  const cert = pem(tls.cert, "cert");
  const key = pem(tls.key, "key");
  if (!cert !== !key) throw new TypeError("loggate: tls.cert and tls.key go together");
  return grpc.credentials.createSsl(ca, key, cert);
}

class Pool {
  /**
   * @param {object} options  target, token, tls, channelOptions,
   *   reconnectBackoff ({ initial, max } ms for the channel's own reconnects)
   */
  constructor(options) {
    const { LogGateway } = load();
    this.token = options.token ? String(options.token) : null;
    const reconnect = options.reconnectBackoff || {};
    const channelOptions = {
      "grpc.primary_user_agent": `loggate-node/${version}`,
      // A DNS name with several addresses: spread calls over all of them.
      "grpc.service_config": JSON.stringify({ loadBalancingConfig: [{ round_robin: {} }] }),
      // grpc-js waits up to 120 s between reconnects by default: too long to
      // notice that a gateway is back.
      "grpc.initial_reconnect_backoff_ms": reconnect.initial ?? 250,
      "grpc.max_reconnect_backoff_ms": reconnect.max ?? 5000,
      "grpc.max_receive_message_length": 64 * 1024 * 1024,
      "grpc.keepalive_time_ms": 60000,
      "grpc.keepalive_timeout_ms": 20000,
      ...(options.tls && typeof options.tls === "object" && options.tls.serverName
        ? {
            "grpc.ssl_target_name_override": options.tls.serverName,
            "grpc.default_authority": options.tls.serverName,
          }
        : {}),
      ...(options.channelOptions || {}),
    };
    this.targets = parseTargets(options.target).map(({ address, https }) => ({
      address,
      stub: new LogGateway(address, credentialsFor(options.tls, https), channelOptions),
    }));
    this.current = options.targetOrder === "listed" ? 0 : Math.floor(Math.random() * this.targets.length);
    this.closed = false;
  }

  get size() {
    return this.targets.length;
  }

  /** The target calls go to now. */
  pick() {
    return this.targets[this.current];
  }

  /** Moves on from `target` (when it is still the current one) to the next. */
  failed(target) {
    if (this.targets[this.current] === target) {
      this.current = (this.current + 1) % this.targets.length;
    }
    return this.targets[this.current];
  }

  metadata() {
    const md = new grpc.Metadata();
    if (this.token) md.set("authorization", `Bearer ${this.token}`);
    return md;
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.targets) t.stub.close();
  }
}

module.exports = { Pool, parseTargets, credentialsFor, pem };
