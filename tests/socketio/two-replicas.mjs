// Alice on one gateway replica, Bob on another: a message Alice sends
// through hers reaches Bob's socket on his (RabbitMQ fan-out consumed by one
// replica, delivered through the Redis adapter), and Bob's client
// acknowledging it is what marks it delivered (Alice sees the receipt; Bob
// never sends message:delivered). Driven by crates/gateway/tests/api/realtime.rs.
import assert from "node:assert/strict";
import { io } from "socket.io-client";

const [urlA, urlB, tokenA, tokenB, conversationId] = process.argv.slice(2);

function connect(url, token) {
  return new Promise((resolve, reject) => {
    const socket = io(url, { auth: { token }, transports: ["websocket"], reconnection: false });
    socket.once("connect", () => resolve(socket));
    socket.once("connect_error", reject);
  });
}

function next(socket, event, ms = 5000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ${event} within ${ms} ms`)), ms);
    socket.once(event, (data, ack) => {
      clearTimeout(timer);
      ack?.(); // what a client does with message:new (README: a bare ack)
      resolve(data);
    });
  });
}

const alice = await connect(urlA, tokenA);
const bob = await connect(urlB, tokenB);
const alsoAlice = await connect(urlB, tokenA); // Alice's second device

const receipts = [];
alice.on("receipt:updated", (receipt) => receipts.push(receipt));
let lastSeq = 0;
for (let i = 1; i <= 5; i++) {
  const toBob = next(bob, "message:new");
  const toHerOtherDevice = next(alsoAlice, "message:new");
  const sent = await alice.emitWithAck("message:send", { conversation_id: conversationId, content: `across replicas ${i}` });
  assert.equal(sent.ok, true, JSON.stringify(sent));
  const [got, echoed] = await Promise.all([toBob, toHerOtherDevice]);
  assert.equal(got.id, sent.data.id);
  assert.equal(echoed.id, sent.data.id);
  lastSeq = sent.data.seq;
}
// Bob's acks (on the other replica) moved his delivered watermark, not his read one.
const deadline = Date.now() + 5000;
const bobsReceipt = () => receipts.find((r) => r.delivered_seq >= lastSeq && r.read_seq < lastSeq);
while (!bobsReceipt() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
assert.ok(bobsReceipt(), `no delivered receipt from acks: ${JSON.stringify(receipts)}`);
// Typing crosses replicas too.
const typing = next(alice, "typing");
assert.equal((await bob.emitWithAck("typing:start", { conversation_id: conversationId })).ok, true);
assert.equal((await typing).typing, true);

for (const socket of [alice, bob, alsoAlice]) socket.disconnect();
console.log("two replicas ok");
