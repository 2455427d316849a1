// A group of 10: every online member receives each message once, and the
// sender sees "read by N" once they read it.
import { assert, collect, connect, done, emit, eventually, ok, register } from "./lib.mjs";

const members = [];
for (let i = 0; i < 10; i++) members.push(await register(`member${i}`));
const [owner, ...others] = members;
const group = await ok("POST", "/conversations/group", {
  token: owner.token,
  body: { title: "Ten of us", member_ids: others.map((m) => m.id) },
});
assert.equal(group.member_count, 10);

const sockets = await Promise.all(members.map((m) => connect(m.token)));
const inboxes = sockets.map(collect);
const sent = [];
for (let i = 0; i < 5; i++) {
  const from = i % 2 === 0 ? 0 : 3;
  sent.push(await emit(sockets[from], "message:send", { conversation_id: group.id, content: `message ${i}` }));
}
await eventually("every member to get every message", () =>
  inboxes.every((inbox, index) => {
    const expected = sent.filter((m) => m.sender_id !== members[index].id).length;
    return inbox.filter((m) => m.conversation_id === group.id).length >= expected;
  }),
);
for (const [index, inbox] of inboxes.entries()) {
  const ids = inbox.map((m) => m.id);
  assert.equal(new Set(ids).size, ids.length, `member ${index} got a duplicate`);
}
const last = sent.at(-1);
for (const socket of sockets.slice(1)) {
  await emit(socket, "message:read", { conversation_id: group.id, up_to_seq: last.seq });
}
const counted = await eventually("read by all nine", async () => {
  const page = await ok("GET", `/conversations/${group.id}/messages`, { token: owner.token });
  const message = page.messages.find((m) => m.id === last.id);
  return message.read_count === 9 ? message : null;
});
assert.equal(counted.recipient_count, 9);
assert.equal(counted.read_count, 9, JSON.stringify(counted));
sockets.forEach((s) => s.disconnect());
done({ scenario: "group", members: 10, messages: sent.length, deliveries: inboxes.reduce((n, i) => n + i.length, 0) });
