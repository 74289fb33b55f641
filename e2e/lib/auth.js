// Ed25519 keys and JWTs for the service's client_auth.
import crypto from 'node:crypto';
import { SignJWT } from 'jose';

export const AUDIENCE = 'riptide-e2e';
export const KID = 'k1';

/** A fresh Ed25519 key pair; `jwk` is the public JWK to put into `client_auth.jwks.keys`. */
export function generateKey(kid = KID) {
  const { publicKey, privateKey } = crypto.generateKeyPairSync('ed25519');
  const jwk = { ...publicKey.export({ format: 'jwk' }), alg: 'EdDSA', kid };
  return { kid, jwk, publicKey, privateKey };
}

/**
 * Signs a token. `claims` may override `sub`, `aud`, `iat`, `exp` (seconds) or add others;
 * a claim set to `undefined` is left out.
 */
export async function signToken(key, claims = {}, header = {}) {
  const now = Math.floor(Date.now() / 1000);
  const payload = { sub: 'user-1', aud: AUDIENCE, iat: now, exp: now + 3600, ...claims };
  for (const k of Object.keys(payload)) if (payload[k] === undefined) delete payload[k];
  return new SignJWT(payload).setProtectedHeader({ alg: 'EdDSA', kid: key.kid, typ: 'JWT', ...header }).sign(key.privateKey);
}

const b64url = (obj) => Buffer.from(JSON.stringify(obj)).toString('base64url');

/** An unsigned `alg: none` token with otherwise valid claims. */
export function unsignedToken(claims = {}, kid = KID) {
  const now = Math.floor(Date.now() / 1000);
  return `${b64url({ alg: 'none', typ: 'JWT', kid })}.${b64url({ sub: 'user-1', aud: AUDIENCE, iat: now, exp: now + 3600, ...claims })}.`;
}
