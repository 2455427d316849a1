// Heartbeat (engine.io pings): a client that answers pings keeps its socket,
// and a client that vanished without closing its connection (it stops
// answering, as a phone that lost its network does) loses its socket within
// pingInterval + pingTimeout, and its user goes offline. The silent client
// speaks engine.io over a raw websocket, so nothing answers pings for it.
// The answering client authenticates with an Authorization header.
// Driven by crates/gateway/tests/api/realtime.rs with short ping settings.
// Usage: node heartbeat.mjs URL LIVE_TOKEN SILENT_TOKEN SILENT_USER_ID PING_INTERVAL_MS PING_TIMEOUT_MS
import assert from "node:assert/strict";
import { io } from "socket.io-client";
import WebSocket from "ws";

const [url, liveToken, silentToken, silentId, intervalArg, timeoutArg] = process.argv.slice(2);
const [interval, timeout] = [Number(intervalArg), Number(timeoutArg)];
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function online(id) {
  const response = await fetch(`${url}/api/v1/presence?ids=${id}`, {
    headers: { authorization: `Bearer ${liveToken}` },
  });
  const body = await response.json();
  assert.equal(response.status, 200, JSON.stringify(body));
  return body[0].online;
}

const live = io(url, {
  extraHeaders: { authorization: `Bearer ${liveToken}` },
  transports: ["websocket"],
  reconnection: false,
});
let livePings = 0;
const liveDisconnects = [];
live.on("disconnect", (reason) => liveDisconnects.push(reason));
await new Promise((resolve, reject) => {
  live.once("connect", resolve);
  live.once("connect_error", reject);
});
live.io.engine.on("ping", () => livePings++);

// engine.io v4 over a raw websocket: OPEN, then the Socket.IO CONNECT with
// the token; pings ("2") are received and never answered.
const silent = new WebSocket(`${url.replace(/^http/, "ws")}/socket.io/?EIO=4&transport=websocket`);
const silentLog = { open: null, connected: false, pings: 0, closedAfterMs: null };
const opened = Date.now();
const closed = new Promise((resolve) => silent.on("close", () => {
  silentLog.closedAfterMs = Date.now() - opened;
  resolve();
}));
silent.on("message", (data) => {
  const text = data.toString();
  if (text.startsWith("0")) {
    silentLog.open = JSON.parse(text.slice(1));
    silent.send(`40${JSON.stringify({ token: silentToken })}`);
  } else if (text.startsWith("40")) {
    silentLog.connected = true;
  } else if (text === "2") {
    silentLog.pings++;
  }
});

// The server announces the configured settings in its OPEN packet.
for (let i = 0; i < 50 && !silentLog.connected; i++) await sleep(100);
assert.ok(silentLog.connected, `the silent client connected: ${JSON.stringify(silentLog)}`);
assert.equal(silentLog.open.pingInterval, interval);
assert.equal(silentLog.open.pingTimeout, timeout);
for (let i = 0; i < 50 && !(await online(silentId)); i++) await sleep(100);
assert.equal(await online(silentId), true, "the silent client's user is online while connected");

// Closed after its first unanswered ping timed out: not before the first
// ping plus the timeout, and well within a few rounds.
await Promise.race([closed, sleep(4 * (interval + timeout) + 2_000)]);
assert.notEqual(silentLog.closedAfterMs, null, `the silent socket was never closed: ${JSON.stringify(silentLog)}`);
assert.equal(silentLog.pings, 1, `one ping, unanswered, then closed: ${JSON.stringify(silentLog)}`);
assert.ok(silentLog.closedAfterMs >= interval + timeout - 50, JSON.stringify(silentLog));

let silentOnline = true;
for (let i = 0; i < 50 && silentOnline; i++) {
  await sleep(100);
  silentOnline = await online(silentId);
}
assert.equal(silentOnline, false, "the vanished client's user went offline");

// Meanwhile the answering client was pinged every interval and kept its socket.
assert.ok(livePings >= 2, `pinged ${livePings} times`);
assert.deepEqual(liveDisconnects, []);
assert.equal(live.connected, true);
live.disconnect();
console.log(JSON.stringify({ live_pings: livePings, silent: silentLog }));
