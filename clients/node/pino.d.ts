/// <reference types="node" />
import type { LogRecordInput, SenderOptions } from "./index";

declare namespace loggateTransport {
  interface PinoTransportOptions extends SenderOptions {
    /** The service of every record: 1..64 of [A-Za-z0-9_-]. */
    service: string;
    /** The gateway(s): "host:port", "a:port,b:port" or an array. */
    target: string | string[];
    /** pino's messageKey, when pino does not tell the transport (default "msg"). */
    messageKey?: string;
    /** pino's errorKey, when pino does not tell the transport (default "err"). */
    errorKey?: string;
  }

  /** The record a pino log object becomes. */
  function fromPino(
    obj: Record<string, unknown>,
    options?: { node?: string; messageKey?: string; errorKey?: string; levelLabels?: Record<number, string> },
  ): LogRecordInput;

  /** A pino level number (or label) as a loggate level name. */
  function pinoLevel(level: number | string, labels?: Record<number, string>): string;
}

/** pino's worker calls this: `pino.transport({ target: "loggate/pino", options })`. */
declare function loggateTransport(options: loggateTransport.PinoTransportOptions): Promise<NodeJS.WritableStream>;

export = loggateTransport;
