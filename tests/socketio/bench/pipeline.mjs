// Load client of the end-to-end (send → store → fan-out) benchmark, the same
// for the Rust gateway and for pipeline-peer.mjs. CONFIG_FILE is JSON:
//   {"url", "users": [{"id", "token"}], "conversations": [{"id", "members": [user id, ...]}],
//    "phases": [{"name", "mode": "closed", "senders", "seconds"} | {"name", "mode": "open", "rate", "seconds"}]}
// It connects one official socket.io-client per user (50 at a time; all must
// connect, else exit 1), prints {"connected": n}, then for each phase waits
// for a line `go` on stdin, runs it and prints one JSON line:
//   {"phase", "sent", "acked", "failed", "seconds", "acked_per_second", "ack_p50_ms", "ack_p99_ms",
//    "deliveries", "expected_deliveries", "delivery_p50_ms", "delivery_p99_ms", "delivery_max_ms"}
// Every sender is a random member of a random conversation. "closed": `senders`
// loops, each waiting for its ack (10 s timeout) before the next send, until
// `seconds` have passed; "open": message k is sent at start + k/rate whatever
// the acks, for `seconds`. A send fails on {ok: false} or on ack timeout.
// `seconds` is the sending time (closed: until the last loop's last ack;
// open: the schedule). Ack latency = ack − emit. A delivery is a
// `message:new` for one of this phase's messages on a socket of a member
// other than the sender (every one is acked, so it counts as delivered);
// its latency = receive − emit. expected_deliveries = Σ (members − 1) over
// acked messages. After sending, the phase waits for the outstanding acks,
// then up to 10 s for the deliveries of every acked message. Diagnostics go
// to stderr. At the end it disconnects and exits 0.
// Usage: node pipeline.mjs CONFIG_FILE
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { createInterface } from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";
import { io } from "socket.io-client";

const ACK_TIMEOUT_MS = 10_000;
const CONNECT_TIMEOUT_MS = 30_000;
const DELIVERY_WAIT_MS = 10_000;
const CONNECT_CONCURRENCY = 50;

const [configFile] = process.argv.slice(2);
if (!configFile) {
  console.error("usage: node pipeline.mjs CONFIG_FILE");
  process.exit(2);
}
const config = JSON.parse(readFileSync(configFile, "utf8"));
const tokens = new Map(config.users.map((user) => [user.id, user.token]));
const conversations = config.conversations;
for (const conversation of conversations) {
  const unknown = conversation.members.filter((id) => !tokens.has(id));
  if (unknown.length) fail(`conversation ${conversation.id}: members without a user entry: ${unknown.join(", ")}`);
  if (conversation.members.length < 1) fail(`conversation ${conversation.id} has no members`);
}
if (!conversations.length) fail("no conversations");
for (const phase of config.phases) {
  const ok =
    (phase.mode === "closed" && phase.senders > 0 && phase.seconds > 0) ||
    (phase.mode === "open" && phase.rate > 0 && phase.seconds > 0);
  if (!ok) fail(`bad phase ${JSON.stringify(phase)}`);
}

function fail(reason) {
  console.error(`pipeline.mjs: ${reason}`);
  process.exit(1);
}

// ---- stdin: `go` lines, buffered so an early `go` is not lost.
const lines = [];
let stdinClosed = false;
let wake = null;
const input = createInterface({ input: process.stdin });
input.on("line", (line) => {
  lines.push(line.trim());
  wake?.();
});
input.on("close", () => {
  stdinClosed = true;
  wake?.();
});
async function waitForGo() {
  for (;;) {
    while (lines.length) if (lines.shift() === "go") return true;
    if (stdinClosed) return false;
    await new Promise((resolve) => (wake = resolve));
    wake = null;
  }
}

// ---- our messages: client_msg_id → record, shared by every socket.
/** @type {Map<string, {sentAt: number, sender: string, expected: number, delivered: number, acked: boolean, phase: object}>} */
const records = new Map();

function onMessageNew(user) {
  return (message, ack) => {
    if (typeof ack === "function") ack();
    if (!message || message.sender_id === user) return;
    const record = records.get(message.client_msg_id);
    if (!record || record.sender === user) return;
    const phase = record.phase;
    phase.deliveryLatencies.push(performance.now() - record.sentAt);
    record.delivered += 1;
    if (record.acked && record.delivered === record.expected) phase.outstanding -= 1;
  };
}

// ---- connect every user, 50 at a time.
let closing = false;
const sockets = new Map(); // user id → socket
function connect(user, token) {
  return new Promise((resolve, reject) => {
    const socket = io(config.url, {
      auth: { token },
      transports: ["websocket"],
      reconnection: false,
      forceNew: true,
      timeout: CONNECT_TIMEOUT_MS,
    });
    const timer = setTimeout(() => {
      socket.disconnect();
      reject(new Error(`user ${user}: no connect within ${CONNECT_TIMEOUT_MS} ms`));
    }, CONNECT_TIMEOUT_MS);
    socket.once("connect", () => {
      clearTimeout(timer);
      resolve(socket);
    });
    socket.once("connect_error", (error) => {
      clearTimeout(timer);
      socket.disconnect();
      reject(new Error(`user ${user}: ${error.message}`));
    });
    socket.on("message:new", onMessageNew(user));
    socket.on("disconnect", (reason) => {
      if (!closing) console.error(`pipeline.mjs: user ${user} disconnected: ${reason}`);
    });
  });
}

const pending = [...tokens];
let nextPending = 0;
const connectErrors = [];
await Promise.all(
  Array.from({ length: Math.min(CONNECT_CONCURRENCY, pending.length) }, async () => {
    while (nextPending < pending.length) {
      const [user, token] = pending[nextPending++];
      try {
        sockets.set(user, await connect(user, token));
      } catch (error) {
        connectErrors.push(error.message);
      }
    }
  }),
);
if (connectErrors.length) {
  closing = true;
  for (const socket of sockets.values()) socket.disconnect();
  fail(`${connectErrors.length} of ${tokens.size} users failed to connect; first: ${connectErrors[0]}`);
}
console.log(JSON.stringify({ connected: sockets.size }));

// ---- phases.
const pick = (array) => array[Math.floor(Math.random() * array.length)];
let counter = 0;

function sendOne(phase) {
  const conversation = pick(conversations);
  const sender = pick(conversation.members);
  const clientMsgId = randomUUID();
  const record = {
    sentAt: 0,
    sender,
    expected: conversation.members.length - 1,
    delivered: 0,
    acked: false,
    phase,
  };
  records.set(clientMsgId, record);
  phase.sent += 1;
  const payload = {
    conversation_id: conversation.id,
    content: `pipeline ${phase.name} message ${++counter}`,
    client_msg_id: clientMsgId,
  };
  record.sentAt = performance.now();
  return sockets
    .get(sender)
    .timeout(ACK_TIMEOUT_MS)
    .emitWithAck("message:send", payload)
    .then(
      (reply) => {
        if (reply?.ok) {
          phase.ackLatencies.push(performance.now() - record.sentAt);
          phase.acked += 1;
          record.acked = true;
          phase.expected += record.expected;
          if (record.delivered < record.expected) phase.outstanding += 1;
        } else {
          failSend(phase, reply?.error?.code ?? `bad reply ${JSON.stringify(reply)}`);
        }
      },
      (error) => failSend(phase, error?.message ?? String(error)),
    );
}

function failSend(phase, reason) {
  phase.failed += 1;
  phase.failures.set(reason, (phase.failures.get(reason) ?? 0) + 1);
}

async function runClosed(phase, spec) {
  const end = phase.start + spec.seconds * 1000;
  await Promise.all(
    Array.from({ length: spec.senders }, async () => {
      while (performance.now() < end) await sendOne(phase);
    }),
  );
}

async function runOpen(phase, spec) {
  const interval = 1000 / spec.rate;
  const total = Math.round(spec.rate * spec.seconds);
  const inflight = [];
  for (let k = 0; k < total; ) {
    const wait = phase.start + k * interval - performance.now();
    if (wait > 0) {
      await sleep(wait);
      continue;
    }
    // Everything already due goes out now (timers are coarser than 1/rate).
    while (k < total && phase.start + k * interval <= performance.now()) {
      inflight.push(sendOne(phase));
      k += 1;
    }
  }
  const end = phase.start + spec.seconds * 1000;
  for (let rest; (rest = end - performance.now()) > 0; ) await sleep(rest);
  return inflight;
}

const round = (ms) => (ms === null ? null : Math.round(ms * 100) / 100);
function percentiles(values) {
  const sorted = Float64Array.from(values).sort();
  const at = (p) => (sorted.length ? round(sorted[Math.min(sorted.length - 1, Math.round((sorted.length - 1) * p))]) : null);
  return { at, max: sorted.length ? round(sorted[sorted.length - 1]) : null };
}

for (const spec of config.phases) {
  if (!(await waitForGo())) {
    closing = true;
    for (const socket of sockets.values()) socket.disconnect();
    fail(`stdin closed before \`go\` for phase ${spec.name}`);
  }
  const phase = {
    name: spec.name,
    start: performance.now(),
    sent: 0,
    acked: 0,
    failed: 0,
    failures: new Map(),
    expected: 0,
    outstanding: 0,
    ackLatencies: [],
    deliveryLatencies: [],
  };
  let inflight = [];
  if (spec.mode === "closed") await runClosed(phase, spec);
  else inflight = await runOpen(phase, spec);
  const seconds = (performance.now() - phase.start) / 1000;
  await Promise.all(inflight); // each settles within ACK_TIMEOUT_MS
  const deadline = performance.now() + DELIVERY_WAIT_MS;
  while (phase.outstanding > 0 && performance.now() < deadline) await sleep(10);

  for (const [id, record] of records) if (record.phase === phase) records.delete(id);
  for (const [reason, count] of phase.failures) console.error(`pipeline.mjs: ${spec.name}: ${count} failed: ${reason}`);
  if (phase.outstanding > 0) {
    console.error(`pipeline.mjs: ${spec.name}: ${phase.outstanding} acked messages still missing deliveries after ${DELIVERY_WAIT_MS} ms`);
  }
  const acks = percentiles(phase.ackLatencies);
  const deliveries = percentiles(phase.deliveryLatencies);
  console.log(
    JSON.stringify({
      phase: spec.name,
      sent: phase.sent,
      acked: phase.acked,
      failed: phase.failed,
      seconds: Math.round(seconds * 1000) / 1000,
      acked_per_second: Math.round((phase.acked / seconds) * 10) / 10,
      ack_p50_ms: acks.at(0.5),
      ack_p99_ms: acks.at(0.99),
      deliveries: phase.deliveryLatencies.length,
      expected_deliveries: phase.expected,
      delivery_p50_ms: deliveries.at(0.5),
      delivery_p99_ms: deliveries.at(0.99),
      delivery_max_ms: deliveries.max,
    }),
  );
}

closing = true;
input.close();
for (const socket of sockets.values()) socket.disconnect();
setTimeout(() => process.exit(0), 500);
