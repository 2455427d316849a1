// Register → log in → private chat → typing → delivered and read receipts,
// seen from the sender's side, and in history.
import { api, assert, connect, done, emit, eventually, next, ok, register } from "./lib.mjs";

const alice = await register("alice");
const bob = await register("bob");
// Log in again (a second session) rather than reuse the registration tokens.
const login = await ok("POST", "/auth/login", { body: { login: bob.username, password: bob.password } });
assert.equal(login.user_id, bob.id);
const refused = await api("POST", "/auth/login", { body: { login: bob.username, password: "wrong password!" } });
assert.equal(refused.status, 401);

const found = await ok("GET", `/users/search?q=${bob.username.slice(0, 8)}`, { token: alice.token });
assert.ok(found.hits.some((hit) => hit.profile.user_id === bob.id), "bob is found by username prefix");
const conversation = await ok("POST", "/conversations/private", { token: alice.token, body: { peer_id: bob.id } });

const aliceSocket = await connect(alice.token);
const bobSocket = await connect(login.access_token);

const typing = next(bobSocket, "typing", (t) => t.conversation_id === conversation.id && t.typing);
await emit(aliceSocket, "typing:start", { conversation_id: conversation.id });
const typed = await typing;
assert.equal(typed.user_id, alice.id);

const delivered = next(aliceSocket, "receipt:updated", (r) => r.user_id === bob.id && r.delivered_seq >= 1);
const incoming = next(bobSocket, "message:new", (m) => m.conversation_id === conversation.id); // acked by next()
const started = Date.now();
const sent = await emit(aliceSocket, "message:send", { conversation_id: conversation.id, content: "hi bob", client_msg_id: "m-1" });
const received = await incoming;
const deliveredAfter = Date.now() - started;
assert.equal(received.id, sent.id);
assert.equal(received.content, "hi bob");
await delivered; // from Bob's ack of message:new alone

const read = next(aliceSocket, "receipt:updated", (r) => r.user_id === bob.id && r.read_seq >= 1);
await emit(bobSocket, "message:read", { conversation_id: conversation.id, up_to_seq: received.seq });
await read;

const history = await ok("GET", `/conversations/${conversation.id}/messages`, { token: alice.token });
const stored = history.messages.find((m) => m.id === sent.id);
assert.deepEqual(stored.delivery_status.map((s) => s.status), ["read"]);
// The same client_msg_id again is the same message, not a second one.
const again = await emit(aliceSocket, "message:send", { conversation_id: conversation.id, content: "hi bob", client_msg_id: "m-1" });
assert.equal(again.id, sent.id);
const list = await eventually("bob's unread count", async () => {
  const page = await ok("GET", "/conversations", { token: bob.token });
  return page.conversations.find((c) => c.id === conversation.id);
});
assert.equal(list.unread_count, 0);

aliceSocket.disconnect();
bobSocket.disconnect();
done({ scenario: "chat", send_to_delivery_ms: deliveredAfter });
