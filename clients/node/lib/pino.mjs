// ESM entry of the pino transport.
import transport from "./pino.js";

export const { fromPino, pinoLevel } = transport;
export default transport;
