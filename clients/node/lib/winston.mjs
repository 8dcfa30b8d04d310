// ESM entry of the winston transport.
import winston from "./winston.js";

export const { LoggateTransport, fromWinston } = winston;
export default LoggateTransport;
