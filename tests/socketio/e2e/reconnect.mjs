// A member goes offline, misses messages, reconnects and catches up with
// `sync`; history pages agree; nothing is lost or repeated.
import { assert, connect, done, emit, ok, register } from "./lib.mjs";

const alice = await register("alice");
const bob = await register("bob");
const conversation = await ok("POST", "/conversations/private", { token: alice.token, body: { peer_id: bob.id } });
const aliceSocket = await connect(alice.token);
let bobSocket = await connect(bob.token);
const first = await emit(aliceSocket, "message:send", { conversation_id: conversation.id, content: "before" });
bobSocket.disconnect();

const missed = [];
for (let i = 0; i < 25; i++) {
  missed.push(await emit(aliceSocket, "message:send", { conversation_id: conversation.id, content: `while away ${i}` }));
}
bobSocket = await connect(bob.token);
const synced = await emit(bobSocket, "sync", { checkpoints: [{ conversation_id: conversation.id, last_seq: first.seq }] });
const entry = synced.conversations.find((c) => c.conversation_id === conversation.id);
assert.deepEqual(entry.messages.map((m) => m.id), missed.map((m) => m.id));

// The same through history pages of 10, newest first.
let seen = [];
let cursor = "";
do {
  const page = await ok("GET", `/conversations/${conversation.id}/messages?limit=10${cursor ? `&cursor=${cursor}` : ""}`, { token: bob.token });
  seen = seen.concat(page.messages.map((m) => m.seq));
  cursor = page.next_cursor;
} while (cursor);
const sorted = [...seen].sort((a, b) => a - b);
assert.equal(new Set(seen).size, seen.length, "no repeats across pages");
assert.deepEqual(sorted, Array.from({ length: 26 }, (_, i) => i + 1), "dense sequence, nothing missing");

aliceSocket.disconnect();
bobSocket.disconnect();
done({ scenario: "reconnect", missed: missed.length, pages: Math.ceil(seen.length / 10) });
