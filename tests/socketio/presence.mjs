// A socket that stays connected longer than users' presence TTL keeps its
// user online (the gateway renews presence), and going away makes the user
// offline. Driven by crates/gateway/tests/api/realtime.rs.
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

const alice = await new Promise((resolve, reject) => {
  const socket = io(url, { auth: { token: tokenA }, transports: ["websocket"], reconnection: false });
  socket.once("connect", () => resolve(socket));
  socket.once("connect_error", reject);
});
await sleep(Number(holdMs));
assert.equal(await aliceOnline(), true, "still online after the presence TTL");
alice.disconnect();
let online = true;
for (let i = 0; i < 50 && online; i++) {
  await sleep(100);
  online = await aliceOnline();
}
assert.equal(online, false, "offline once the socket is gone");
console.log("presence ok");
