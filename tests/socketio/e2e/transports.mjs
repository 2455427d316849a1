// Clients on HTTP long-polling, and clients that start on polling and
// upgrade to WebSocket (socket.io-client's default), chat like WebSocket
// ones: acks, message:new both ways, receipts, unknown-event errors.
import { assert, connect, done, emit, next, ok, register, url } from "./lib.mjs";

const alice = await register("alice");
const bob = await register("bob");
const conversation = await ok("POST", "/conversations/private", { token: alice.token, body: { peer_id: bob.id } });
const polling = await connect(alice.token, url, ["polling"]);
const upgrading = await connect(bob.token, url, ["polling", "websocket"]);
await new Promise((resolve, reject) => {
  if (upgrading.io.engine.transport.name === "websocket") return resolve();
  upgrading.io.engine.once("upgrade", resolve);
  setTimeout(() => reject(new Error("no upgrade to websocket within 10 s")), 10_000);
});
assert.equal(polling.io.engine.transport.name, "polling");

const toBob = next(upgrading, "message:new", (m) => m.content === "over polling");
const sent = await emit(polling, "message:send", { conversation_id: conversation.id, content: "over polling" });
assert.equal((await toBob).id, sent.id);
const delivered = next(polling, "receipt:updated", (r) => r.user_id === bob.id && r.delivered_seq >= sent.seq);
await delivered;

const toAlice = next(polling, "message:new", (m) => m.content === "over websocket");
await emit(upgrading, "message:send", { conversation_id: conversation.id, content: "over websocket" });
await toAlice;

for (const socket of [polling, upgrading]) {
  const reply = await socket.timeout(10_000).emitWithAck("no:such:event", {});
  assert.equal(reply.ok, false);
  assert.equal(reply.error.field, "event");
}
polling.disconnect();
upgrading.disconnect();
done({ scenario: "transports", polling: "polling", upgraded: "websocket" });
