/**
 * HS256 JSON Web Tokens (RFC 7515 compact serialization, RFC 7519 claims), checked
 * synchronously and as jose's `jwtVerify` checks them (stricter in one point: the signature's
 * spelling, below): test/jwt.test.ts gives both the same tokens. Synchronous because a
 * `?token=` is checked in uWS's upgrade handler, and an upgrade made there answers at once.
 * One made later (jose verifies on libuv's thread pool) goes through HttpResponse.cork(), whose
 * test for an upgrade misses one whose socket kept its address, and which then closes the new
 * WebSocket: about one `?token=` connection in 5,000
 * got 1006 right after its 101 (uWebSockets PR #1929, fixed after the uWS.js build we can use).
 * HMAC-SHA256 of a token costs a few microseconds; the thread pool's queue cost more.
 */
import { Buffer } from 'node:buffer';
import { createHmac, timingSafeEqual } from 'node:crypto';

export interface JwtRules {
  /** The HS256 secret. */
  key: Uint8Array;
  /** Required `iss` and `aud` values; '' = not checked. */
  issuer: string;
  audience: string;
  requireExp: boolean;
  clockToleranceS: number;
}

/** jose's error codes, so that a refusal reads as before (`bad token: CODE`); `expired` and `no_exp` have reasons of their own. */
export type JwtFailure =
  | 'expired'
  | 'no_exp'
  | 'ERR_JWS_INVALID'
  | 'ERR_JOSE_ALG_NOT_ALLOWED'
  | 'ERR_JOSE_NOT_SUPPORTED'
  | 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED'
  | 'ERR_JWT_INVALID'
  | 'ERR_JWT_CLAIM_VALIDATION_FAILED';

export type JwtResult = { ok: true; claims: Record<string, unknown> } | { ok: false; failure: JwtFailure };

const BASE64URL = /^[A-Za-z0-9_-]*$/;
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/** `part` as the JSON object it encodes, or null (not base64url, not UTF-8, not JSON, not an object). */
function jsonObject(part: string): Record<string, unknown> | null {
  // A length of 4n + 1 is no base64url (jose refuses it; Buffer would drop the last character).
  if (!BASE64URL.test(part) || part.length % 4 === 1) return null;
  try {
    const value: unknown = JSON.parse(strictUtf8.decode(Buffer.from(part, 'base64url')));
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

const fail = (failure: JwtFailure): JwtResult => ({ ok: false, failure });

export function verifyJwt(token: string, rules: JwtRules, nowMs = Date.now()): JwtResult {
  const parts = token.split('.', 4); // at most 4: a 64 KB run of dots costs no 64 K-part array
  if (parts.length !== 3) return fail('ERR_JWS_INVALID');
  const [encodedHeader, encodedClaims, encodedSignature] = parts as [string, string, string];
  const header = jsonObject(encodedHeader);
  if (header === null) return fail('ERR_JWS_INVALID');
  // No extension is understood here (jose knows only b64, whose unencoded form a JWT may not use).
  if (header.crit !== undefined) return fail('ERR_JOSE_NOT_SUPPORTED');
  if (typeof header.alg !== 'string' || header.alg === '') return fail('ERR_JWS_INVALID');
  if (header.alg !== 'HS256') return fail('ERR_JOSE_ALG_NOT_ALLOWED');
  if (!BASE64URL.test(encodedClaims) || !BASE64URL.test(encodedSignature)) return fail('ERR_JWS_INVALID');
  // The signature's text, not its bytes: the last of 43 characters has 2 bits that decoding
  // drops, so one signed token had 4 spellings, and max_lifetime took each for a fresh token
  // (identity.ts). jose accepts all 4; only the one an HS256 signer writes passes here.
  const expected = Buffer.from(createHmac('sha256', rules.key).update(`${encodedHeader}.${encodedClaims}`).digest('base64url'));
  const signature = Buffer.from(encodedSignature);
  if (signature.length !== expected.length || !timingSafeEqual(signature, expected)) return fail('ERR_JWS_SIGNATURE_VERIFICATION_FAILED');
  const claims = jsonObject(encodedClaims);
  if (claims === null) return fail('ERR_JWT_INVALID');
  return checkClaims(claims, rules, Math.floor(nowMs / 1000));
}

/** RFC 7519's registered claims, in jose's order: presence, iss and aud, then the times (epoch seconds, `now`). */
function checkClaims(claims: Record<string, unknown>, rules: JwtRules, now: number): JwtResult {
  const has = (claim: string): boolean => Object.hasOwn(claims, claim);
  if (rules.issuer !== '' && !has('iss')) return fail('ERR_JWT_CLAIM_VALIDATION_FAILED');
  if (rules.audience !== '' && !has('aud')) return fail('ERR_JWT_CLAIM_VALIDATION_FAILED');
  if (rules.requireExp && !has('exp')) return fail('no_exp');
  if (rules.issuer !== '' && claims.iss !== rules.issuer) return fail('ERR_JWT_CLAIM_VALIDATION_FAILED');
  if (rules.audience !== '' && !audienceIncludes(claims.aud, rules.audience)) return fail('ERR_JWT_CLAIM_VALIDATION_FAILED');
  for (const claim of ['iat', 'nbf', 'exp']) {
    if (claims[claim] !== undefined && typeof claims[claim] !== 'number') return fail('ERR_JWT_CLAIM_VALIDATION_FAILED');
  }
  const tolerance = rules.clockToleranceS;
  const { nbf, exp } = claims as { nbf?: number; exp?: number };
  if (nbf !== undefined && nbf > now + tolerance) return fail('ERR_JWT_CLAIM_VALIDATION_FAILED');
  if (exp !== undefined && exp <= now - tolerance) return fail('expired');
  return { ok: true, claims };
}

function audienceIncludes(aud: unknown, audience: string): boolean {
  return typeof aud === 'string' ? aud === audience : Array.isArray(aud) && aud.includes(audience);
}
