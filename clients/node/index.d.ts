/// <reference types="node" />

/** loggate's levels, lowest first. */
export type LevelName = "trace" | "debug" | "info" | "warn" | "error" | "fatal";

/** The wire's Level numbers by name: trace 1 … fatal 6. */
export declare const Level: Readonly<Record<LevelName, number>>;

/** gRPC status codes (grpc-js's `status`), for `err.code`. */
export declare const status: Readonly<Record<string, number>>;

/** The gateway's fixed record limits. */
export declare const LIMITS: Readonly<{
  maxMessageBytes: number;
  maxAttributes: number;
  maxAttributeKeyChars: number;
  maxAttributeValueBytes: number;
  maxServiceChars: number;
  maxNodeChars: number;
  maxIdChars: number;
}>;

/** A new UUIDv7, the kind of id the gateway assigns. */
export declare function newId(): string;

/** A PEM: its text, a Buffer, or the path of a file holding it. */
export type Pem = string | Buffer | Uint8Array;

export interface TlsOptions {
  /** CA certificate(s) to trust instead of the system's roots. */
  ca?: Pem;
  /** Client certificate chain, for a gateway that wants one (mTLS). */
  cert?: Pem;
  /** The client certificate's private key. */
  key?: Pem;
  /** Check the gateway's certificate for this name instead of the target's host. */
  serverName?: string;
}

export interface ConnectionOptions {
  /**
   * One gateway ("host:port", "dns:///name:port", "http://…" or "https://…"),
   * several (an array, or a comma-separated string), or a grpc-js
   * multi-address target ("ipv4:10.0.0.1:50051,10.0.0.2:50051", kept whole).
   * Calls go to one gateway at a time and fail over to the next when it is
   * not there; a DNS name with several addresses is round-robined by gRPC.
   */
  target: string | string[];
  /** A bearer token (`loggate token new`), sent as `authorization: Bearer …`. */
  token?: string;
  /** false/undefined: plaintext (https:// targets: TLS); true: TLS with the system's roots; or CA/client certificate. */
  tls?: boolean | TlsOptions;
  /** Which gateway to start with: a random one (default, spreads many processes) or the first listed. */
  targetOrder?: "random" | "listed";
  /** Deadline of log and logBatch calls, ms (default 30000). */
  timeout?: number;
  /** grpc-js's own reconnect backoff, ms (default initial 250, max 5000). */
  reconnectBackoff?: { initial?: number; max?: number };
  /** Extra grpc-js channel options. */
  channelOptions?: Record<string, string | number>;
}

export type ClientOptions = ConnectionOptions;

/** A record to send. Only service (or a sender's default) is required. */
export interface LogRecordInput {
  service?: string;
  message?: string;
  /** A level name (also winston's and syslog's words), "LEVEL_WARN", or 1..6. Default info. */
  level?: LevelName | string | number;
  /** Event time: a Date, epoch ms, or an ISO string. Unset: now (sender) or the gateway's receive time (log). */
  time?: Date | number | string;
  node?: string;
  /** Values that are not strings are sent as strings (objects as JSON). */
  attributes?: Record<string, unknown> | Map<string, unknown>;
  /** W3C trace id: 32 lowercase hex digits. */
  traceId?: string;
  /** W3C span id: 16 lowercase hex digits; only with traceId. */
  spanId?: string;
  /** Idempotency key, 1..64 printable ASCII characters. Unset: a UUIDv7 made here. */
  id?: string;
}

/** A record as a tail reads it. */
export interface LogRecord {
  id: string;
  /** Millisecond precision. */
  time: Date | null;
  receivedTime: Date | null;
  service: string;
  node: string;
  level: LevelName;
  message: string;
  attributes: Record<string, string>;
  traceId: string;
  spanId: string;
  /** The accepting gateway's --instance. */
  gateway: string;
  /** The principal that wrote it (empty when the gateway has no auth). */
  principal: string;
  /** Tail again with this to continue right after this record. */
  resumeToken: string;
}

export interface TailFilters {
  services?: string[] | string;
  minLevel?: LevelName | string | number;
  nodes?: string[] | string;
  traceId?: string;
  attributes?: Record<string, string>;
  contains?: string;
  // One start at most; none: live, from now.
  /** Records that arrived this long ago or later: ms, or "90s", "5m", "2h", "1d". */
  since?: number | string;
  startTime?: Date | number | string;
  resumeToken?: string;
  fromBeginning?: boolean;
  /** End once the history as it was at the (re)start is read. Needs a start. */
  historyOnly?: boolean;
  /** End after this many records (counted across reconnects). */
  limit?: number;
}

export interface TailOptions {
  /** Reopen the tail when nothing, not even a heartbeat, came for this long (ms, default 60000; 0 off). */
  idleTimeout?: number;
  /** Delay between reopening attempts after the first try on each gateway, ms (default 100 … 5000). */
  backoff?: { initial?: number; max?: number };
  /** Records buffered before the call is paused (default 256). */
  highWaterMark?: number;
  onCaughtUp?: () => void;
  onGap?: (reason: string) => void;
  onHeartbeat?: (beat: { time: Date | null; headTime: Date | null }) => void;
  onReconnect?: (info: { error: Error; target: string; delay: number }) => void;
}

/** A resuming tail: iterate it with for await. */
export declare class Tail implements AsyncIterableIterator<LogRecord> {
  private constructor();
  /** The token of the last record received (the start of a reopened tail). */
  readonly resumeToken: string | null;
  /** The gateway it reads from now. */
  readonly target: string | null;
  next(): Promise<IteratorResult<LogRecord, undefined>>;
  return(): Promise<IteratorResult<LogRecord, undefined>>;
  [Symbol.asyncIterator](): this;
  /** Ends the tail; a pending next() resolves done. */
  cancel(): void;
}

export interface SenderOptions extends Partial<ConnectionOptions> {
  /** The service of records that name none: 1..64 of [A-Za-z0-9_-]. */
  service?: string;
  /** The node of records that name none (default: the host name). */
  node?: string;
  /** Records held (waiting or in flight) before new ones are dropped (default 10000). */
  queueSize?: number;
  /** Records per request (default 500; at most 1000, the gateway's default --max-batch). */
  batchSize?: number;
  /** Most bytes of records in one request (default 1 MiB; one larger record goes alone). */
  maxBatchBytes?: number;
  /** How long a record may wait for a batch to fill, ms (default 100). */
  flushInterval?: number;
  /** Requests pipelined on the stream (default 4). */
  maxInflightRequests?: number;
  /** A request unanswered this long (ms, default 30000) breaks the stream; its records are sent again. */
  requestTimeout?: number;
  /** Retry backoff, ms (default initial 100, max 10000). */
  backoff?: { initial?: number; max?: number };
  /** What flush() and close() wait at most, ms (default 5000). */
  closeTimeout?: number;
  /** End the stream after this long with nothing to send, ms (default 500). */
  streamIdleTimeout?: number;
  /** At most one warning per kind on stderr per this many ms (default 10000). */
  warnInterval?: number;
  /** Messages are cut to this many bytes of UTF-8 (default 65536, the gateway's default). */
  maxMessageBytes?: number;
  /** Called (at most once per interval per kind) instead of writing to stderr. */
  onError?: (error: Error & { code: number | string }) => void;
  /** Share this client's channels instead of opening new ones. */
  client?: Client;
}

export interface SenderStats {
  /** Records the gateway confirmed. */
  sent: number;
  /** Records dropped: queue full, sent after close, or undelivered at close. */
  dropped: number;
  /** Records sent again after a retryable error or a broken stream. */
  retried: number;
  /** Records the gateway refused for good (INVALID_ARGUMENT, PERMISSION_DENIED, …). */
  failed: number;
  /** Records held now: waiting or in flight. */
  queued: number;
  /** The gateway it sends to now. */
  target: string;
}

/** The background sender: bounded, batching, retrying with the same ids, never blocking. */
export declare class Sender {
  constructor(options: SenderOptions);
  /** Queues a record; false when it was dropped. Never throws, never waits. */
  send(record: LogRecordInput): boolean;
  /** Resolves true once everything queued before the call is delivered (or dropped), false after `timeout` ms. */
  flush(timeout?: number): Promise<boolean>;
  /** Stops, delivers what is queued within `timeout` ms, ends the stream. */
  close(timeout?: number): Promise<SenderStats>;
  stats(): SenderStats;
}

export declare class Client {
  constructor(options: ClientOptions);
  /** The gateways. */
  readonly targets: string[];
  /** Publishes one record; resolves after RabbitMQ's confirm (or the gateway's spool). Rejects with a gRPC error (err.code, err.details). */
  log(record: LogRecordInput, options?: { timeout?: number }): Promise<{ id: string; spooled: boolean }>;
  /** Publishes records in order (at most the gateway's --max-batch). */
  logBatch(records: LogRecordInput[], options?: { timeout?: number }): Promise<{ ids: string[]; spooled: boolean }>;
  /** Follows records, resuming by token across reconnects and gateways. */
  tail(filters?: TailFilters, options?: TailOptions): Tail;
  /** A background sender on this client's channels. */
  createSender(options?: SenderOptions): Sender;
  /** Closes the senders (delivering within `timeout`), the tails and the channels. */
  close(timeout?: number): Promise<void>;
}

export declare function createClient(options: ClientOptions): Client;
export declare function createSender(options: SenderOptions & { target: string | string[] }): Sender;
