// A socket that stays connected longer than users' presence TTL keeps its
// user online (the gateway renews presence), and going away makes the user
// offline; a socket subscribed to that user's presence is told of both
// changes. A socket swaps in a fresh token of its own user only
// (auth:refresh). Driven by crates/gateway/tests/api/realtime.rs.
import assert from "node:assert/strict";
import { io } from "socket.io-client";

const [url, tokenA, tokenB, aliceId, holdMs] = process.argv.slice(2);

async function aliceOnline() {
  const response = await fetch(`${url}/api/v1/presence?ids=${aliceId}`, {
    headers: { authorization: `Bearer ${tokenB}` },
  });
  const body = await response.json();
  assert.equal(response.status, 200, JSON.stringify(body));
  return body[0].online;
}
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function connect(token) {
  return new Promise((resolve, reject) => {
    const socket = io(url, { auth: { token }, transports: ["websocket"], reconnection: false });
    socket.once("connect", () => resolve(socket));
    socket.once("connect_error", reject);
  });
}
const changes = [];
const bob = await connect(tokenB);
bob.on("presence", (presence) => changes.push(presence));
const subscribed = await bob.emitWithAck("presence:subscribe", { user_ids: [aliceId] });
assert.equal(subscribed.ok, true, JSON.stringify(subscribed));
assert.deepEqual(subscribed.data.presences.map((p) => [p.user_id, p.online]), [[aliceId, false]]);
const invalid = await bob.emitWithAck("presence:subscribe", { user_ids: [] });
assert.equal(invalid.error.field, "user_ids");

const alice = await connect(tokenA);
for (let i = 0; i < 50 && !changes.some((c) => c.online); i++) await sleep(100);
assert.deepEqual(changes.map((c) => [c.user_id, c.online]), [[aliceId, true]], "told Alice came online");

const refreshed = await alice.emitWithAck("auth:refresh", { token: tokenA });
assert.equal(refreshed.ok, true, JSON.stringify(refreshed));
const stolen = await alice.emitWithAck("auth:refresh", { token: tokenB });
assert.equal(stolen.error.code, "PERMISSION_DENIED");
const forged = await alice.emitWithAck("auth:refresh", { token: "not.a.token" });
assert.equal(forged.error.code, "UNAUTHENTICATED");
await sleep(Number(holdMs));
assert.equal(await aliceOnline(), true, "still online after the presence TTL");
alice.disconnect();
let online = true;
for (let i = 0; i < 50 && online; i++) {
  await sleep(100);
  online = await aliceOnline();
}
assert.equal(online, false, "offline once the socket is gone");
for (let i = 0; i < 50 && changes.length < 2; i++) await sleep(100);
assert.deepEqual(changes.map((c) => c.online), [true, false], "told Alice went offline");
bob.disconnect();
console.log("presence ok");
