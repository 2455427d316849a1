// Talking to the example bot (helper_bot): a command with typed arguments,
// a usage error, and the three-step pizza dialogue with a validation retry.
import { assert, collect, connect, done, emit, eventually, ok, register } from "./lib.mjs";

const alice = await register("alice");
const hits = await eventually("helper_bot to be provisioned", async () => {
  const page = await ok("GET", "/users/search?q=helper_bot", { token: alice.token });
  return page.hits.find((h) => h.profile.username === "helper_bot");
}, 20_000);
const botId = hits.profile.user_id;
const conversation = await ok("POST", "/conversations/private", { token: alice.token, body: { peer_id: botId } });
const socket = await connect(alice.token);
const inbox = collect(socket);

async function ask(text) {
  const before = inbox.filter((m) => m.sender_id === botId).length;
  await emit(socket, "message:send", { conversation_id: conversation.id, content: text });
  const reply = await eventually(`a reply to ${text}`, () => inbox.filter((m) => m.sender_id === botId)[before], 15_000);
  return reply.content;
}

const started = Date.now();
assert.equal(await ask("/weather 3 New York"), "3-day forecast for New York: sunny.");
const replyMs = Date.now() - started;
assert.match(await ask("/weather soon Paris"), /days/i, "a usage error names the bad argument");
assert.match(await ask("/order"), /Which size/);
assert.match(await ask("huge"), /small, medium or large/i, "an invalid answer repeats the choices");
assert.match(await ask("large"), /How many large/);
assert.match(await ask("2"), /shall I order/);
assert.equal(await ask("yes"), "Ordered 2 large pizza(s).");
socket.disconnect();
done({ scenario: "bot", first_reply_ms: replyMs });
