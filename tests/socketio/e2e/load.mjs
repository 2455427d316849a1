// Steady message load for the fault test: a group of four, one sender at
// ~10 messages/s (each send retried with its client_msg_id until acked),
// three readers whose sockets reconnect on their own and catch up with
// `sync`. Runs until STOP_FILE exists, then lets deliveries settle and
// checks: every acknowledged message is in history (dense seqs) and reached
// every member (live or by sync). Prints the figures as one JSON line.
import { existsSync } from "node:fs";
import { io } from "socket.io-client";
import { assert, done, ok, register, url } from "./lib.mjs";

const stopFile = process.env.STOP_FILE;
const members = [];
for (let i = 0; i < 4; i++) members.push(await register(`load${i}`));
const [sender, ...readers] = members;
const group = await ok("POST", "/conversations/group", {
  token: sender.token,
  body: { title: "load", member_ids: readers.map((m) => m.id) },
});
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function reader(member) {
  const state = { live: new Set(), synced: new Set(), reconnects: 0, lastSeq: 0 };
  const socket = io(url, {
    auth: { token: member.token },
    transports: ["websocket"],
    reconnectionDelay: 250,
    reconnectionDelayMax: 1000,
  });
  socket.on("message:new", (message, ack) => {
    if (typeof ack === "function") ack();
    if (message.conversation_id !== group.id) return;
    state.live.add(message.id);
    state.lastSeq = Math.max(state.lastSeq, message.seq);
  });
  // What a reconnecting client does: fetch what it has not seen (history
  // after the last seq it holds, with its own token).
  state.catchUp = async () => {
    try {
      let after = 0;
      for (;;) {
        const page = await ok("GET", `/conversations/${group.id}/messages?after=${after}&limit=200`, { token: member.token });
        for (const message of page.messages) {
          if (!state.live.has(message.id)) state.synced.add(message.id);
          after = Math.max(after, message.seq);
        }
        if (page.messages.length < 200) break;
      }
    } catch {
      // down right now; the next reconnect or the final pass catches up
    }
  };
  socket.io.on("reconnect", () => {
    state.reconnects++;
    state.catchUp();
  });
  state.socket = socket;
  return state;
}
const states = readers.map(reader);
await sleep(500);

const senderSocket = io(url, { auth: { token: sender.token }, transports: ["websocket"], reconnectionDelay: 250, reconnectionDelayMax: 1000 });
const acked = new Map(); // id -> seq
let attempts = 0;
let failures = 0;
let counter = 0;
const latencies = [];
while (!existsSync(stopFile)) {
  const clientMsgId = `load-${counter++}`;
  // Retry this message until it is acknowledged (or the run ends).
  for (;;) {
    attempts++;
    const started = Date.now();
    try {
      const reply = await senderSocket.timeout(5_000).emitWithAck("message:send", {
        conversation_id: group.id, content: clientMsgId, client_msg_id: clientMsgId,
      });
      if (reply.ok) {
        acked.set(reply.data.id, reply.data.seq);
        latencies.push(Date.now() - started);
        break;
      }
      failures++;
    } catch {
      failures++;
    }
    if (existsSync(stopFile)) break;
    await sleep(200);
  }
  await sleep(100);
}

// Settle: every reader has every acknowledged message, live or by sync.
const deadline = Date.now() + 60_000;
const missingOf = (state) => [...acked.keys()].filter((id) => !state.live.has(id) && !state.synced.has(id));
while (Date.now() < deadline && states.some((s) => missingOf(s).length > 0)) {
  await Promise.all(states.map((s) => s.catchUp()));
  await sleep(500);
}

// History holds every acknowledged message, seqs dense from 1.
const seen = new Map();
let cursor = "";
do {
  const page = await ok("GET", `/conversations/${group.id}/messages?limit=200${cursor ? `&cursor=${cursor}` : ""}`, { token: sender.token });
  for (const message of page.messages) seen.set(message.id, message.seq);
  cursor = page.next_cursor;
} while (cursor);
const missingInHistory = [...acked.keys()].filter((id) => !seen.has(id));
const seqs = [...seen.values()].sort((a, b) => a - b);
const dense = seqs.every((seq, i) => seq === i + 1);

latencies.sort((a, b) => a - b);
const result = {
  scenario: "load",
  acked: acked.size,
  send_attempts: attempts,
  failed_attempts: failures,
  in_history: acked.size - missingInHistory.length,
  history_dense: dense,
  readers: states.map((s) => ({ live: [...acked.keys()].filter((id) => s.live.has(id)).length, by_sync: [...acked.keys()].filter((id) => s.synced.has(id)).length, missing: missingOf(s).length, reconnects: s.reconnects })),
  ack_ms_p50: latencies[Math.floor(latencies.length * 0.5)] ?? null,
  ack_ms_p99: latencies[Math.floor(latencies.length * 0.99)] ?? null,
  ack_ms_max: latencies.at(-1) ?? null,
};
console.log(JSON.stringify(result));
assert.equal(missingInHistory.length, 0, `acknowledged but not in history: ${JSON.stringify(result)}`);
assert.ok(dense, `history seqs have gaps: ${JSON.stringify(result)}`);
for (const s of states) assert.equal(missingOf(s).length, 0, `a reader misses messages: ${JSON.stringify(result)}`);
senderSocket.disconnect();
states.forEach((s) => s.socket.disconnect());
done(result);
