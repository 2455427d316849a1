// Shared helpers of the end-to-end scenarios: only public interfaces (REST
// with fetch, Socket.IO with the official socket.io-client). GATEWAY_URL is
// the gateway; GATEWAY_URLS lists every replica. Scenarios print one JSON
// line on success and exit non-zero with the reason on the first failure.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { io } from "socket.io-client";

export { assert };
export const url = process.env.GATEWAY_URL;
export const urls = (process.env.GATEWAY_URLS || url).split(",");

export async function api(method, path, { token, body, base = url } = {}) {
  const headers = { "content-type": "application/json" };
  if (token) headers.authorization = `Bearer ${token}`;
  const response = await fetch(`${base}/api/v1${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

/** `api` that must answer 2xx; returns the body. */
export async function ok(method, path, options) {
  const { status, body } = await api(method, path, options);
  assert.ok(status >= 200 && status < 300, `${method} ${path} → ${status} ${JSON.stringify(body)}`);
  return body;
}

export async function register(name) {
  const username = `${name}_${randomBytes(5).toString("hex")}`.slice(0, 32);
  const password = "correct horse battery staple";
  const body = await ok("POST", "/auth/register", {
    body: { username, email: `${username}@example.com`, password, display_name: name },
  });
  // The profile is created by users from auth's `user.registered` event, a
  // moment after registration answers (longer while users' consumer is
  // still connecting): wait for it as an app would before others can add
  // this user to a conversation.
  for (let i = 0; ; i++) {
    const { status } = await api("GET", "/users/me", { token: body.tokens.access_token });
    if (status === 200) break;
    assert.ok(status === 404 && i < 200, `the profile of ${username} never appeared (${status})`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return { id: body.user.id, username, password, token: body.tokens.access_token, tokens: body.tokens };
}

export function connect(token, base = url, transports = ["websocket"]) {
  return new Promise((resolve, reject) => {
    const socket = io(base, { auth: { token }, transports, reconnection: false });
    socket.once("connect", () => resolve(socket));
    socket.once("connect_error", reject);
  });
}

/** The next `event` on `socket` matching `accept`, within `ms`. */
export function next(socket, event, accept = () => true, ms = 10_000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.off(event, handler);
      reject(new Error(`no matching ${event} within ${ms} ms`));
    }, ms);
    function handler(data, ack) {
      if (typeof ack === "function") ack();
      if (!accept(data)) return;
      clearTimeout(timer);
      socket.off(event, handler);
      resolve(data);
    }
    socket.on(event, handler);
  });
}

/** Emits with an ack that must be `{ok: true}`; returns its data. */
export async function emit(socket, event, payload) {
  const reply = await socket.timeout(10_000).emitWithAck(event, payload);
  assert.equal(reply.ok, true, `${event} → ${JSON.stringify(reply)}`);
  return reply.data;
}

/** Acknowledges every `message:new` (so it counts as delivered) and keeps them. */
export function collect(socket) {
  const messages = [];
  socket.on("message:new", (message, ack) => {
    if (typeof ack === "function") ack();
    messages.push(message);
  });
  return messages;
}

export async function eventually(what, check, ms = 10_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

export function done(result) {
  console.log(JSON.stringify(result));
  process.exit(0);
}
