// Load clients of `cargo bench -p gateway`: connects one official
// socket.io-client per token (JSON array file), prints "connected", then
// counts `message:new` deliveries and their latency (receive time minus the
// message's sent_at) until EXPECTED arrive, and prints a JSON summary.
// Usage: node load.mjs URL TOKENS_FILE EXPECTED TIMEOUT_MS
import { readFileSync } from "node:fs";
import { io } from "socket.io-client";

const [url, tokensFile, expected, timeoutMs] = process.argv.slice(2);
const tokens = JSON.parse(readFileSync(tokensFile, "utf8"));
const latencies = [];
let done;
const finished = new Promise((resolve) => (done = resolve));

function connect(token) {
  return new Promise((resolve, reject) => {
    const socket = io(url, { auth: { token }, transports: ["websocket"], reconnection: false, forceNew: true });
    socket.once("connect", () => resolve(socket));
    socket.once("connect_error", reject);
    socket.on("message:new", (message) => {
      latencies.push(Date.now() - Date.parse(message.sent_at));
      if (latencies.length >= Number(expected)) done();
    });
  });
}

const sockets = [];
for (let i = 0; i < tokens.length; i += 50) {
  sockets.push(...(await Promise.all(tokens.slice(i, i + 50).map(connect))));
}
console.log("connected");
const timer = setTimeout(() => done(), Number(timeoutMs));
await finished;
clearTimeout(timer);
latencies.sort((a, b) => a - b);
const at = (p) => latencies[Math.min(latencies.length - 1, Math.round((latencies.length - 1) * p))];
console.log(JSON.stringify({ deliveries: latencies.length, p50_ms: at(0.5), p99_ms: at(0.99) }));
for (const socket of sockets) socket.disconnect();
process.exit(0);
