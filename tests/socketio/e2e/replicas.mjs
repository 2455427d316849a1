// Two gateway replicas: members connected to different replicas chat in
// real time (Redis adapter + shared fan-out queue), receipts cross too.
import { assert, connect, done, emit, eventually, next, ok, register, urls } from "./lib.mjs";

assert.ok(urls.length >= 2, "needs two gateway URLs");
const alice = await register("alice");
const bob = await register("bob");
const conversation = await ok("POST", "/conversations/private", { token: alice.token, body: { peer_id: bob.id } });
const aliceSocket = await connect(alice.token, urls[0]);
const bobSocket = await connect(bob.token, urls[1]);
let crossed = 0;
for (let i = 0; i < 10; i++) {
  const [from, to] = i % 2 === 0 ? [aliceSocket, bobSocket] : [bobSocket, aliceSocket];
  const incoming = next(to, "message:new", (m) => m.content === `ping ${i}`);
  await emit(from, "message:send", { conversation_id: conversation.id, content: `ping ${i}` });
  await incoming;
  crossed++;
}
// Receipts cross too: Alice's last message, read by Bob on the other replica.
const receipts = [];
aliceSocket.on("receipt:updated", (r) => receipts.push(r));
const last = await emit(aliceSocket, "message:send", { conversation_id: conversation.id, content: "read me" });
await emit(bobSocket, "message:read", { conversation_id: conversation.id, up_to_seq: last.seq });
await eventually("Bob's read receipt on Alice's replica", () => receipts.some((r) => r.user_id === bob.id && r.read_seq >= last.seq))
  .catch((error) => { throw new Error(`${error.message}; receipts seen: ${JSON.stringify(receipts)}`); });
aliceSocket.disconnect();
bobSocket.disconnect();
done({ scenario: "replicas", crossed });
