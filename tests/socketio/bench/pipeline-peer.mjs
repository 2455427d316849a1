// The Node.js peer of the end-to-end (send → store → fan-out) benchmark: a
// plain socket.io server storing messages with the official `mongodb` driver,
// written the way a Node team would — EdDSA JWT checked on the handshake, one
// room per user, and `message:send` doing findOneAndUpdate on the
// conversation (membership check + next seq), insertOne of the message, an
// emit of `message:new` to the members' rooms and the ack.
// Unlike the Rust chat service it uses NO transaction (nor outbox, receipts
// or preview update): a failed insert leaves a gap in the sequence, and the
// fan-out is a direct in-process emit. That is the point of the comparison —
// what the simple way costs and gives up. A retried client_msg_id gets the
// stored message back (no second fan-out).
// At startup it inserts SETUP_FILE's conversations
// ({"conversations": [{"id", "members": [user id, ...]}]}) and creates the
// indexes, then listens on 127.0.0.1:PORT and prints `ready`.
// Usage: node pipeline-peer.mjs PORT JWKS_JSON MONGODB_URL DATABASE SETUP_FILE
import http from "node:http";
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { Server } from "socket.io";
import { handshakeAuth } from "./jwt.mjs";
import { MongoClient } from "mongodb";

const [port, jwksJson, mongoUrl, database, setupFile] = process.argv.slice(2);
const MAX_CONTENT_CHARS = 4096;
const MAX_CLIENT_MSG_ID = 64;

const client = new MongoClient(mongoUrl);
await client.connect();
const db = client.db(database);
const conversations = db.collection("conversations");
const messages = db.collection("messages");

const setup = JSON.parse(readFileSync(setupFile, "utf8"));
if (setup.conversations?.length) {
  await conversations.insertMany(
    setup.conversations.map((c) => ({ _id: c.id, member_ids: c.members, last_seq: 0 })),
    { ordered: false },
  );
}
await messages.createIndexes([
  { key: { conversation_id: 1, seq: 1 }, name: "conversation_seq_unique", unique: true },
  {
    key: { conversation_id: 1, sender_id: 1, client_msg_id: 1 },
    name: "client_msg_id_unique",
    unique: true,
    partialFilterExpression: { client_msg_id: { $exists: true } },
  },
]);

const failure = (code, message) => ({ ok: false, error: { code, message } });

function dto(m) {
  return {
    id: m._id,
    conversation_id: m.conversation_id,
    seq: m.seq,
    sender_id: m.sender_id,
    kind: m.kind,
    content: m.content,
    client_msg_id: m.client_msg_id ?? "",
    sent_at: m.sent_at.toISOString(),
  };
}

function validate(payload) {
  const { conversation_id, content, client_msg_id } = payload ?? {};
  if (typeof conversation_id !== "string" || !conversation_id) return "conversation_id must be a non-empty string";
  if (typeof content !== "string") return "content must be a string";
  const chars = [...content].length;
  if (chars < 1 || chars > MAX_CONTENT_CHARS) return `content must be 1-${MAX_CONTENT_CHARS} characters`;
  if (client_msg_id !== undefined && client_msg_id !== null && client_msg_id !== "") {
    if (typeof client_msg_id !== "string" || client_msg_id.length > MAX_CLIENT_MSG_ID || !/^[A-Za-z0-9._:-]+$/.test(client_msg_id)) {
      return `client_msg_id must be 1-${MAX_CLIENT_MSG_ID} characters of letters, digits, '-', '_', '.', ':'`;
    }
  }
  return null;
}

async function send(user, payload) {
  const invalid = validate(payload);
  if (invalid) return failure("INVALID_ARGUMENT", invalid);
  const { conversation_id, content } = payload;
  const client_msg_id = payload.client_msg_id || undefined;
  try {
    const conversation = await conversations.findOneAndUpdate(
      { _id: conversation_id, member_ids: user },
      { $inc: { last_seq: 1 } },
      { returnDocument: "after" },
    );
    if (!conversation) return failure("NOT_FOUND", "conversation not found");
    const message = {
      _id: randomUUID(),
      conversation_id,
      seq: conversation.last_seq,
      sender_id: user,
      kind: "text",
      content,
      sent_at: new Date(),
    };
    if (client_msg_id) message.client_msg_id = client_msg_id;
    try {
      await messages.insertOne(message);
    } catch (error) {
      if (error?.code === 11000 && client_msg_id && /client_msg_id/.test(error.message)) {
        const stored = await messages.findOne({ conversation_id, sender_id: user, client_msg_id });
        if (stored) return { ok: true, data: dto(stored) };
      }
      throw error;
    }
    const body = dto(message);
    io.to(conversation.member_ids.map((id) => `user:${id}`)).emit("message:new", body);
    return { ok: true, data: body };
  } catch (error) {
    return failure("UNAVAILABLE", String(error?.message ?? error));
  }
}

const server = http.createServer();
const io = new Server(server, { transports: ["websocket"] });
io.use(handshakeAuth(jwksJson));
io.on("connection", (socket) => {
  socket.join(`user:${socket.data.user}`);
  socket.on("message:send", (payload, ack) => {
    if (typeof payload === "function") [payload, ack] = [undefined, payload];
    send(socket.data.user, payload).then(
      (reply) => typeof ack === "function" && ack(reply),
      (error) => typeof ack === "function" && ack(failure("INTERNAL", String(error?.message ?? error))),
    );
  });
});

server.listen(Number(port), "127.0.0.1", () => console.log("ready"));
