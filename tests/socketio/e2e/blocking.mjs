// Blocking: the blocked user cannot message the blocker or find them, and
// nothing reaches the blocker's socket; unblocking restores it.
import { api, assert, collect, connect, done, emit, ok, register } from "./lib.mjs";

const alice = await register("alice");
const mallory = await register("mallory");
const conversation = await ok("POST", "/conversations/private", { token: mallory.token, body: { peer_id: alice.id } });
const aliceSocket = await connect(alice.token);
const inbox = collect(aliceSocket);
const malSocket = await connect(mallory.token);
await emit(malSocket, "message:send", { conversation_id: conversation.id, content: "hello" });

await ok("PUT", `/users/me/blocks/${mallory.id}`, { token: alice.token });
// chat reuses users' permission answers for USERS_CACHE_TTL (5 s, documented).
await new Promise((resolve) => setTimeout(resolve, 5_500));
const refused = await malSocket.timeout(10_000).emitWithAck("message:send", { conversation_id: conversation.id, content: "still there?" });
assert.equal(refused.ok, false);
assert.equal(refused.error.code, "PERMISSION_DENIED", JSON.stringify(refused));
const rest = await api("POST", `/conversations/${conversation.id}/messages`, { token: mallory.token, body: { content: "and now?" } });
assert.equal(rest.status, 403);
const search = await ok("GET", `/users/search?q=${alice.username}`, { token: mallory.token });
assert.ok(!search.hits.some((h) => h.profile.user_id === alice.id), "the blocker is hidden from search");

await ok("DELETE", `/users/me/blocks/${mallory.id}`, { token: alice.token });
// users' answers are cached up to USERS_CACHE_TTL (5 s) in chat.
let delivered = false;
for (let i = 0; i < 60 && !delivered; i++) {
  const reply = await malSocket.timeout(10_000).emitWithAck("message:send", { conversation_id: conversation.id, content: `back ${i}` });
  delivered = reply.ok;
  if (!delivered) await new Promise((r) => setTimeout(r, 250));
}
assert.ok(delivered, "unblocking lets messages through again");
assert.ok(!inbox.some((m) => m.content === "still there?" || m.content === "and now?"));
aliceSocket.disconnect();
malSocket.disconnect();
done({ scenario: "blocking" });
