// Connection storm of the gateway benchmarks: opens one official
// socket.io-client connection per token (JSON array file), at most
// CONCURRENCY attempts in flight at once, and times each from `io(...)` to
// its `connect` event. A `connect_error` or no connect within 30 s counts as
// failed. Prints ONE JSON line
//   {"connected", "failed", "seconds", "p50_ms", "p90_ms", "p99_ms", "max_ms"}
// then keeps every socket open and idle until a line `stop` arrives on stdin
// (or stdin closes), disconnects them all and exits 0. LOCAL_ADDRESS, if
// given, is the source address of every connection (so that successive runs
// do not compete for the ephemeral ports of one address). Only that line
// goes to stdout; diagnostics go to stderr.
// Usage: node connect.mjs URL TOKENS_FILE CONCURRENCY [LOCAL_ADDRESS]
import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { createInterface } from "node:readline";
import { io } from "socket.io-client";

const CONNECT_TIMEOUT_MS = 30_000;
const [url, tokensFile, concurrencyArg, localAddress] = process.argv.slice(2);
if (!url || !tokensFile || !concurrencyArg) {
  console.error("usage: node connect.mjs URL TOKENS_FILE CONCURRENCY [LOCAL_ADDRESS]");
  process.exit(2);
}
const tokens = JSON.parse(readFileSync(tokensFile, "utf8"));
const concurrency = Math.max(1, Number(concurrencyArg));
// `timeout` is the manager's own limit on the engine.io handshake (default
// 20 s); the timer in `attempt` covers the whole connect.
const options = { transports: ["websocket"], reconnection: false, forceNew: true, timeout: CONNECT_TIMEOUT_MS };
if (localAddress) options.localAddress = localAddress;

// `stop` may arrive (or stdin close) while connecting: honoured once the
// summary line is out.
let stopRequested = false;
let summarised = false;
let shuttingDown = false;
const input = createInterface({ input: process.stdin });
input.on("line", (line) => {
  if (line.trim() === "stop") requestStop();
});
input.on("close", requestStop);

const sockets = []; // connected sockets only: the one reference each keeps
const latencies = new Float64Array(tokens.length);
let connected = 0;
let failed = 0;
const failures = new Map(); // reason → count, for the stderr diagnostic

/** One attempt; resolves (never rejects) when it connected or failed. */
function attempt(token) {
  return new Promise((resolve) => {
    const started = performance.now();
    const socket = io(url, { ...options, auth: { token } });
    const timer = setTimeout(() => finish(new Error(`no connect within ${CONNECT_TIMEOUT_MS} ms`)), CONNECT_TIMEOUT_MS);
    function onConnect() {
      finish(null);
    }
    function finish(error) {
      clearTimeout(timer);
      socket.off("connect", onConnect);
      socket.off("connect_error", finish);
      if (error) {
        failed += 1;
        const reason = String(error?.message ?? error);
        failures.set(reason, (failures.get(reason) ?? 0) + 1);
        socket.disconnect();
      } else {
        latencies[connected++] = performance.now() - started;
        sockets.push(socket);
      }
      resolve();
    }
    socket.once("connect", onConnect);
    socket.once("connect_error", finish);
  });
}

let nextIndex = 0;
async function worker() {
  while (nextIndex < tokens.length) {
    const index = nextIndex++;
    const token = tokens[index];
    tokens[index] = null; // nothing per socket survives but the socket
    await attempt(token);
  }
}

const started = performance.now();
await Promise.all(Array.from({ length: Math.min(concurrency, tokens.length) }, worker));
const seconds = (performance.now() - started) / 1000;

const sorted = latencies.subarray(0, connected).sort();
const round = (ms) => Math.round(ms * 100) / 100;
const at = (p) => (sorted.length ? round(sorted[Math.min(sorted.length - 1, Math.round((sorted.length - 1) * p))]) : null);
if (failures.size) {
  for (const [reason, count] of failures) console.error(`connect.mjs: ${count} failed: ${reason}`);
}
process.stdout.write(
  `${JSON.stringify({
    connected,
    failed,
    seconds: Math.round(seconds * 1000) / 1000,
    p50_ms: at(0.5),
    p90_ms: at(0.9),
    p99_ms: at(0.99),
    max_ms: sorted.length ? round(sorted[sorted.length - 1]) : null,
  })}\n`,
);
summarised = true;
if (stopRequested) shutdown();

function requestStop() {
  if (stopRequested && summarised) return;
  stopRequested = true;
  if (summarised) shutdown();
}

function shutdown() {
  if (shuttingDown) return;
  shuttingDown = true;
  input.close();
  const stillConnected = sockets.reduce((n, socket) => n + (socket.connected ? 1 : 0), 0);
  console.error(`connect.mjs: stop; ${stillConnected} of ${sockets.length} sockets still connected`);
  for (const socket of sockets) socket.disconnect();
  // Let the close frames go out before leaving.
  setTimeout(() => process.exit(0), 1000);
}
