import TransportStream = require("winston-transport");
import type { LogRecordInput, SenderOptions, SenderStats } from "./index";

export interface LoggateTransportOptions extends SenderOptions, TransportStream.TransportStreamOptions {
  /** The service of every record: 1..64 of [A-Za-z0-9_-]. */
  service: string;
  /** The gateway(s): "host:port", "a:port,b:port" or an array. */
  target: string | string[];
  /** Custom winston level → loggate level ("trace" … "fatal"). */
  levels?: Record<string, string>;
  /** The transport's name (default "loggate"). */
  name?: string;
}

/** A winston transport that sends to loggate in the background. */
export declare class LoggateTransport extends TransportStream {
  constructor(options: LoggateTransportOptions);
  name: string;
  log(info: any, next: () => void): any;
  /** Delivers what is queued now; true when all of it was delivered within `timeout` ms. */
  flush(timeout?: number): Promise<boolean>;
  /** Stops and delivers what is queued (logger.close() calls it). */
  close(timeout?: number): Promise<SenderStats>;
  stats(): SenderStats;
}

/** The record a winston info object becomes. */
export declare function fromWinston(
  info: Record<string | symbol, unknown>,
  options?: { levels?: Record<string, string> },
): LogRecordInput;

export default LoggateTransport;
