// The Node.js peer of `cargo bench -p gateway`: a socket.io server doing the
// gateway's fan-out job the way a Node team would write it — EdDSA JWT
// checked on the handshake, one room per user, `message.created` events
// consumed from RabbitMQ (protobuf envelopes) and emitted to the
// recipients' rooms. With REDIS_URL, broadcasts go through the official
// Redis adapter, as the gateway's do (so replicas share rooms); without,
// they stay in this process.
// Usage: node peer-server.mjs PORT JWKS_JSON AMQP_URL EXCHANGE QUEUE PROTO_DIR [REDIS_URL KEY_PREFIX]
import http from "node:http";
import { Server } from "socket.io";
import { createAdapter } from "@socket.io/redis-adapter";
import { Redis } from "ioredis";
import { handshakeAuth } from "./jwt.mjs";
import amqp from "amqplib";
import protobuf from "protobufjs";

const [port, jwksJson, amqpUrl, exchange, queue, protoDir, redisUrl, keyPrefix] = process.argv.slice(2);

const server = http.createServer();
const io = new Server(server, { transports: ["websocket"] });
if (redisUrl) {
  const pub = new Redis(redisUrl);
  const sub = pub.duplicate();
  io.adapter(createAdapter(pub, sub, { key: `${keyPrefix}socket.io` }));
}
io.use(handshakeAuth(jwksJson));
io.on("connection", (socket) => socket.join(`user:${socket.data.user}`));

const root = new protobuf.Root();
root.resolvePath = (_origin, target) => (target.startsWith("google/") ? target : `${protoDir}/${target}`);
await root.load("platform/events/v1/events.proto", { keepCase: true });
const Envelope = root.lookupType("platform.events.v1.EventEnvelope");

const connection = await amqp.connect(amqpUrl);
const channel = await connection.createChannel();
await channel.assertExchange(exchange, "topic", { durable: true });
await channel.assertQueue(queue, { durable: false, autoDelete: true });
await channel.bindQueue(queue, exchange, "message.created");
await channel.prefetch(256);
await channel.consume(queue, (delivery) => {
  const envelope = Envelope.decode(delivery.content);
  const created = envelope.message_created;
  if (created?.message) {
    const m = created.message;
    const sentAt = m.sent_at ? new Date(Number(m.sent_at.seconds) * 1000 + Math.floor((m.sent_at.nanos ?? 0) / 1e6)) : null;
    const body = {
      id: m.id, conversation_id: m.conversation_id, seq: Number(m.seq), sender_id: m.sender_id,
      kind: m.kind, content: m.content, sent_at: sentAt?.toISOString(), deleted: m.deleted,
    };
    io.to(created.recipient_ids.map((id) => `user:${id}`)).emit("message:new", body);
  }
  channel.ack(delivery);
});

server.listen(Number(port), "127.0.0.1", () => console.log("ready"));
