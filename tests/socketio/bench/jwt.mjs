// Access-token check of the Node.js benchmark peers, as a Node team would
// write it: EdDSA only, key by `kid` from a JWKS, expiry; the user id goes
// to `socket.data.user`.
import { createPublicKey, verify } from "node:crypto";

/** `authenticate(token) → user id` for the keys of JWKS_JSON (a JSON array of JWKs). */
function verifier(jwksJson) {
  const keys = new Map(JSON.parse(jwksJson).map((jwk) => [jwk.kid, createPublicKey({ key: jwk, format: "jwk" })]));
  return function authenticate(token) {
    const [header, payload, signature] = String(token ?? "").split(".");
    if (!signature) throw new Error("UNAUTHENTICATED: malformed token");
    const head = JSON.parse(Buffer.from(header, "base64url"));
    const key = keys.get(head.kid);
    if (head.alg !== "EdDSA" || !key) throw new Error("UNAUTHENTICATED: unknown key");
    if (!verify(null, Buffer.from(`${header}.${payload}`), key, Buffer.from(signature, "base64url"))) {
      throw new Error("UNAUTHENTICATED: bad signature");
    }
    const claims = JSON.parse(Buffer.from(payload, "base64url"));
    if (claims.exp * 1000 < Date.now()) throw new Error("UNAUTHENTICATED: expired");
    return claims.sub;
  };
}

/** socket.io middleware: the handshake's `auth.token` must verify. */
export function handshakeAuth(jwksJson) {
  const authenticate = verifier(jwksJson);
  return (socket, next) => {
    try {
      socket.data.user = authenticate(socket.handshake.auth?.token);
      next();
    } catch (error) {
      next(error);
    }
  };
}
