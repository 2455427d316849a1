// Refresh-token rotation: each refresh returns a new pair; reusing a
// rotated-out refresh token is theft and revokes the whole session family.
import { api, assert, connect, done, emit, ok, register } from "./lib.mjs";

const alice = await register("alice");
const first = alice.tokens;
const second = await ok("POST", "/auth/refresh", { body: { refresh_token: first.refresh_token } });
assert.notEqual(second.refresh_token, first.refresh_token);
assert.equal(second.session_id, first.session_id);
const third = await ok("POST", "/auth/refresh", { body: { refresh_token: second.refresh_token } });

// The fresh access token works, also swapped into a live socket.
const socket = await connect(first.access_token);
await emit(socket, "auth:refresh", { token: third.access_token });
await ok("GET", "/users/me", { token: third.access_token });

// Replaying an old refresh token: refused, and the family is revoked.
const replay = await api("POST", "/auth/refresh", { body: { refresh_token: first.refresh_token } });
assert.equal(replay.status, 401, JSON.stringify(replay.body));
const afterTheft = await api("POST", "/auth/refresh", { body: { refresh_token: third.refresh_token } });
assert.equal(afterTheft.status, 401, "the current token of the family is revoked too");
// A new login is a new family and works.
const fresh = await ok("POST", "/auth/login", { body: { login: alice.username, password: alice.password } });
await ok("POST", "/auth/refresh", { body: { refresh_token: fresh.refresh_token } });
socket.disconnect();
done({ scenario: "refresh", rotations: 2 });
