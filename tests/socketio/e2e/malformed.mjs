// Malformed Socket.IO traffic neither crashes nor wedges the gateway: every
// bad payload or unknown event gets an error ack (or is ignored without an
// ack), the socket keeps working, and other clients are unaffected.
import { assert, connect, done, emit, next, ok, register, url } from "./lib.mjs";
import WebSocket from "ws";

const alice = await register("alice");
const bob = await register("bob");
const conversation = await ok("POST", "/conversations/private", { token: alice.token, body: { peer_id: bob.id } });
const socket = await connect(alice.token);
const bobSocket = await connect(bob.token);

const payloads = [
  null, 42, "text", [], [1, 2], true,
  {}, { conversation_id: 7 }, { conversation_id: conversation.id },
  { conversation_id: conversation.id, content: 5 },
  { conversation_id: conversation.id, content: "x".repeat(100_000) },
  { conversation_id: "not-an-id", content: "x" },
  { conversation_id: conversation.id, content: "x", kind: "hologram" },
  { conversation_id: conversation.id, content: "x", attachment: "nope" },
  { conversation_id: conversation.id, up_to_seq: -1 },
  { conversation_id: conversation.id, up_to_seq: "all" },
  { checkpoints: "everything" }, { user_ids: Array.from({ length: 1000 }, (_, i) => `u${i}`) },
  { token: "forged" },
];
const events = ["message:send", "message:read", "message:delivered", "typing:start", "sync", "presence:subscribe", "auth:refresh"];
let errorAcks = 0;
for (const event of events) {
  for (const payload of payloads) {
    const reply = await socket.timeout(10_000).emitWithAck(event, payload);
    assert.equal(typeof reply, "object", `${event} answered ${JSON.stringify(reply)}`);
    if (reply.ok === false) {
      errorAcks++;
      assert.ok(reply.error?.code && reply.error?.message, JSON.stringify(reply));
      assert.notEqual(reply.error.code, "INTERNAL", `${event} ${JSON.stringify(payload)?.slice(0, 80)}`);
    }
  }
}
// An unknown event gets an error naming it; without an ack, bad input is ignored.
const unknown = await socket.timeout(10_000).emitWithAck("no:such:event", { a: 1 });
assert.equal(unknown.ok, false, JSON.stringify(unknown));
assert.equal(unknown.error.code, "INVALID_ARGUMENT");
assert.equal(unknown.error.field, "event");
assert.match(unknown.error.message, /no:such:event/);
socket.emit("message:send", { conversation_id: conversation.id });
socket.emit("no:such:event", { a: 1 });

// Raw garbage on a bare Engine.IO WebSocket: the gateway closes that one.
const raw = new WebSocket(`${url.replace("http", "ws")}/socket.io/?EIO=4&transport=websocket`);
await new Promise((resolve) => raw.once("open", resolve));
for (const frame of ["4not-json", "42[", "4" + "[".repeat(5000), "\u0000\u00ff", "40/unknown,"]) raw.send(frame);
raw.send(Buffer.from([0xff, 0x00, 0x13]));
await new Promise((resolve) => setTimeout(resolve, 500));
raw.terminate();

// Still serving: a real send goes through to the other member.
const incoming = next(bobSocket, "message:new", (m) => m.content === "still alive");
await emit(socket, "message:send", { conversation_id: conversation.id, content: "still alive" });
await incoming;
const health = await fetch(`${url}/api/v1/users/me`, { headers: { authorization: `Bearer ${alice.token}` } });
assert.equal(health.status, 200);
socket.disconnect();
bobSocket.disconnect();
done({ scenario: "malformed", payloads: events.length * payloads.length, error_acks: errorAcks });
