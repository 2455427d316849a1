// Access tokens for the platform benchmark (`cargo bench -p e2e`): a fresh
// Ed25519 key (PKCS#8 PEM, for auth's AUTH_SIGNING_KEY), its public JWKS (for
// the Node.js peers) and COUNT users, each {id, token}, with the claims
// auth's own tokens carry. Usage: node tokens.mjs COUNT OUT_DIR KID
import { generateKeyPairSync, randomUUID, sign } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";

const [count, outDir, kid] = process.argv.slice(2);
const { publicKey, privateKey } = generateKeyPairSync("ed25519");
const base64url = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
const header = base64url({ alg: "EdDSA", typ: "JWT", kid });
const now = Math.floor(Date.now() / 1000);
const users = [];
for (let i = 0; i < Number(count); i++) {
  const id = randomUUID();
  const claims = base64url({
    sub: id, sid: randomUUID(), name: `bench${i}`, bot: false, iss: "chat-platform-auth",
    aud: "chat-platform", iat: now, nbf: now, exp: now + 6 * 3600, jti: randomUUID(),
  });
  const signature = sign(null, Buffer.from(`${header}.${claims}`), privateKey).toString("base64url");
  users.push({ id, token: `${header}.${claims}.${signature}` });
}
writeFileSync(join(outDir, "key.pem"), privateKey.export({ format: "pem", type: "pkcs8" }));
writeFileSync(join(outDir, "jwks.json"), JSON.stringify([{ ...publicKey.export({ format: "jwk" }), kid, alg: "EdDSA", use: "sig" }]));
writeFileSync(join(outDir, "users.json"), JSON.stringify(users));
writeFileSync(join(outDir, "tokens.json"), JSON.stringify(users.map((user) => user.token)));
