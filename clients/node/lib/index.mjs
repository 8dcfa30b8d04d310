// ESM entry: the CommonJS module's exports, by name.
import loggate from "./index.js";

export const { createClient, createSender, Client, Sender, Tail, LIMITS, Level, status, newId } = loggate;
export default loggate;
