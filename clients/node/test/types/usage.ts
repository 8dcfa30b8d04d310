// Compiled with `tsc -p test/types` (no emit) by types.test.js: the
// package's declarations as a TypeScript user's project sees them.
import { createClient, createSender, Level, LogRecord, Sender, SenderStats, Tail } from "loggate";
import loggateTransport = require("loggate/pino");
import { LoggateTransport } from "loggate/winston";
import winston = require("winston");
import pino from "pino";

async function main(): Promise<void> {
  const client = createClient({
    target: ["127.0.0.1:50051", "127.0.0.1:50052"],
    token: "lgt_x",
    tls: { ca: "ca.pem" },
  });
  const { id, spooled } = await client.log({ service: "checkout", level: "warn", message: "m", attributes: { n: 1 } });
  const batch: { ids: string[]; spooled: boolean } = await client.logBatch([{ service: "checkout", message: "x" }]);
  const tail: Tail = client.tail(
    { services: ["checkout"], since: "5m", minLevel: "warn" },
    { onGap: (reason: string) => void reason },
  );
  for await (const record of tail) {
    const r: LogRecord = record;
    const when: Date | null = r.time;
    void [r.resumeToken, r.attributes["k"], when];
    tail.cancel();
  }
  const sender: Sender = createSender({ target: "127.0.0.1:50051", service: "checkout", queueSize: 1000 });
  const queued: boolean = sender.send({ message: "hi", time: Date.now() });
  const stats: SenderStats = await sender.close(1000);
  void [id, spooled, batch, queued, stats.dropped, Level.warn];

  const transport = pino.transport({
    target: "loggate/pino",
    options: { service: "checkout", target: "127.0.0.1:50051" },
  });
  pino(transport).info("hello");
  const mapped = loggateTransport.fromPino({ level: 30, msg: "x" });
  void mapped.message;

  const wt = new LoggateTransport({ service: "checkout", target: "127.0.0.1:50051", level: "info" });
  const logger = winston.createLogger({ transports: [wt] });
  logger.info("hello", { user: "ann" });
  const flushed: boolean = await wt.flush(1000);
  void flushed;
  await client.close();
}

void main;
