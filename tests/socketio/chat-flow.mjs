// Two real socket.io-client users chatting through the gateway; driven by
// crates/gateway/tests/api/realtime.rs. Exits non-zero with the reason on
// the first expectation that fails.
import assert from "node:assert/strict";
import { io } from "socket.io-client";

const [url, tokenA, tokenB, conversationId, aliceId] = process.argv.slice(2);

function connect(token) {
  return new Promise((resolve, reject) => {
    const socket = io(url, { auth: { token }, transports: ["websocket"], reconnection: false });
    socket.once("connect", () => resolve(socket));
    socket.once("connect_error", (error) => reject(error));
  });
}

function next(socket, event, ms = 5000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${event} within ${ms} ms`)), ms);
    socket.once(event, (data) => {
      clearTimeout(timer);
      resolve(data);
    });
  });
}

// A forged token is refused at the handshake, with a reason.
await assert.rejects(connect("not-a-token"), (error) => /UNAUTHENTICATED/.test(error.message));

const alice = await connect(tokenA);
const bob = await connect(tokenB);

// A connected socket makes its user online (users' presence, via REST).
async function aliceOnline() {
  const response = await fetch(`${url}/api/v1/presence?ids=${aliceId}`, {
    headers: { authorization: `Bearer ${tokenB}` },
  });
  const body = await response.json();
  assert.equal(response.status, 200, JSON.stringify(body));
  return body[0].online;
}
for (let i = 0; i < 50 && !(await aliceOnline()); i++) {
  await new Promise((resolve) => setTimeout(resolve, 100));
}
assert.equal(await aliceOnline(), true, "alice is online while her socket is connected");

// A send is acknowledged with the stored message and fanned out.
const incoming = next(bob, "message:new");
const sent = await alice.emitWithAck("message:send", {
  conversation_id: conversationId,
  content: "hello from socket.io-client",
  client_msg_id: "js-1",
});
assert.equal(sent.ok, true, JSON.stringify(sent));
assert.equal(sent.data.seq, 1);
const received = await incoming;
assert.equal(received.id, sent.data.id);
assert.equal(received.content, "hello from socket.io-client");

// Typing reaches the other member.
const typing = next(bob, "typing");
assert.equal((await alice.emitWithAck("typing:start", { conversation_id: conversationId })).ok, true);
const typed = await typing;
assert.equal(typed.typing, true);
assert.equal(typed.conversation_id, conversationId);

// Bob acknowledges delivery and reading; Alice sees the receipts.
const receipt = next(alice, "receipt:updated");
assert.equal((await bob.emitWithAck("message:delivered", { conversation_id: conversationId, up_to_seq: 1 })).ok, true);
let update = await receipt;
if (update.read_seq < 1) {
  const read = next(alice, "receipt:updated");
  assert.equal((await bob.emitWithAck("message:read", { conversation_id: conversationId, up_to_seq: 1 })).ok, true);
  update = await read;
}
assert.equal(update.user_id !== undefined, true);

// Bad input gets an error ack naming the field, not a dropped socket.
const bad = await alice.emitWithAck("message:send", { conversation_id: conversationId, content: "" });
assert.equal(bad.ok, false);
assert.equal(bad.error.code, "INVALID_ARGUMENT");
assert.equal(bad.error.field, "content");

// Bob goes away; Alice sends two; Bob reconnects and syncs what he missed.
bob.disconnect();
for (const text of ["missed one", "missed two"]) {
  assert.equal((await alice.emitWithAck("message:send", { conversation_id: conversationId, content: text })).ok, true);
}
const again = await connect(tokenB);
const synced = await again.emitWithAck("sync", { checkpoints: [{ conversation_id: conversationId, last_seq: 1 }] });
assert.equal(synced.ok, true, JSON.stringify(synced));
const missed = synced.data.conversations.find((c) => c.conversation_id === conversationId);
assert.deepEqual(missed.messages.map((m) => m.content), ["missed one", "missed two"]);

alice.disconnect();
again.disconnect();
console.log("socket.io flow ok");
