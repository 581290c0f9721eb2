/**
 * The server's own HS256 check (src/auth/jwt.ts) against jose's jwtVerify, which it replaced
 * in the server: the same tokens, the same verdicts. Tokens are built by hand, so that each
 * part can be wrong in its own way.
 */
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { describe, test } from 'node:test';
import { jwtVerify, type JWTVerifyOptions } from 'jose';
import { verifyJwt, type JwtRules } from '../src/auth/jwt.js';

const SECRET = 'jwt-test-secret-of-reasonable-length';
const KEY = new TextEncoder().encode(SECRET);
const now = Math.floor(Date.now() / 1000);

const b64 = (value: string | Buffer): string => Buffer.from(value).toString('base64url');
const json = (value: unknown): string => b64(JSON.stringify(value));

/** A compact JWS of `header` and `claims` (objects, or raw base64url text), signed with HMAC-SHA256 unless `signature` is given. */
function token(claims: unknown, header: unknown = { alg: 'HS256', typ: 'JWT' }, signature?: string, secret = SECRET): string {
  const head = typeof header === 'string' ? header : json(header);
  const body = typeof claims === 'string' ? claims : json(claims);
  return `${head}.${body}.${signature ?? createHmac('sha256', secret).update(`${head}.${body}`).digest('base64url')}`;
}

const rules: JwtRules = { key: KEY, issuer: '', audience: '', requireExp: true, clockToleranceS: 5 };
const joseOptions = (r: JwtRules): JWTVerifyOptions => ({
  algorithms: ['HS256'],
  clockTolerance: r.clockToleranceS,
  ...(r.requireExp ? { requiredClaims: ['exp'] } : {}),
  ...(r.issuer ? { issuer: r.issuer } : {}),
  ...(r.audience ? { audience: r.audience } : {}),
});

async function joseAccepts(jwt: string, r: JwtRules): Promise<boolean> {
  try {
    await jwtVerify(jwt, KEY, joseOptions(r));
    return true;
  } catch {
    return false;
  }
}

const valid = { sub: 'alice', iat: now, exp: now + 3600 };
const other = createHmac('sha256', 'another secret').update('x').digest('base64url');

/** [what, token, rules, accepted, failure when refused] */
const cases: Array<[string, string, JwtRules, boolean, string?]> = [
  ['a valid token', token(valid), rules, true],
  ['expired', token({ ...valid, exp: now - 60 }), rules, false, 'expired'],
  ['expired within the clock tolerance', token({ ...valid, exp: now - 2 }), rules, true],
  ['no exp where one is required', token({ sub: 'alice' }), rules, false, 'no_exp'],
  ['no exp where none is required', token({ sub: 'alice' }), { ...rules, requireExp: false }, true],
  ['not before a minute from now', token({ ...valid, nbf: now + 60 }), rules, false, 'ERR_JWT_CLAIM_VALIDATION_FAILED'],
  ['not before, within the tolerance', token({ ...valid, nbf: now + 2 }), rules, true],
  ['exp as text', token({ ...valid, exp: String(now + 3600) }), { ...rules, requireExp: false }, false, 'ERR_JWT_CLAIM_VALIDATION_FAILED'],
  ['iat as text', token({ ...valid, iat: 'now' }), rules, false, 'ERR_JWT_CLAIM_VALIDATION_FAILED'],
  ['nbf as text', token({ ...valid, nbf: 'now' }), rules, false, 'ERR_JWT_CLAIM_VALIDATION_FAILED'],
  ['a tampered payload', token(valid).replace(/\.[^.]+\./, `.${json({ ...valid, sub: 'mallory' })}.`), rules, false, 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED'],
  ['signed with another secret', token(valid, undefined, undefined, 'another secret'), rules, false, 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED'],
  ["another token's signature", token(valid, undefined, other), rules, false, 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED'],
  ['a truncated signature', token(valid).slice(0, -4), rules, false, 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED'],
  ['alg none, no signature', token(valid, { alg: 'none' }, ''), rules, false, 'ERR_JOSE_ALG_NOT_ALLOWED'],
  ['alg HS512', token(valid, { alg: 'HS512' }, createHmac('sha512', SECRET).update('x').digest('base64url')), rules, false, 'ERR_JOSE_ALG_NOT_ALLOWED'],
  ['no alg', token(valid, { typ: 'JWT' }), rules, false, 'ERR_JWS_INVALID'],
  ['a crit header', token(valid, { alg: 'HS256', crit: ['exp'], exp: 1 }), rules, false, 'ERR_JOSE_NOT_SUPPORTED'],
  ['an unencoded payload (b64: false)', token(valid, { alg: 'HS256', crit: ['b64'], b64: false }), rules, false, 'ERR_JOSE_NOT_SUPPORTED'],
  ['a header that is an array', token(valid, ['HS256']), rules, false, 'ERR_JWS_INVALID'],
  ['a header that is not JSON', token(valid, b64('{alg')), rules, false, 'ERR_JWS_INVALID'],
  ['claims that are an array', token([valid]), rules, false, 'ERR_JWT_INVALID'],
  ['claims that are null', token(b64('null')), rules, false, 'ERR_JWT_INVALID'],
  ['claims that are not UTF-8', token(b64(Buffer.from([0x7b, 0x22, 0xff, 0x22, 0x3a, 0x31, 0x7d]))), rules, false, 'ERR_JWT_INVALID'],
  ['two parts', token(valid).split('.').slice(0, 2).join('.'), rules, false, 'ERR_JWS_INVALID'],
  ['four parts', `${token(valid)}.x`, rules, false, 'ERR_JWS_INVALID'],
  ['nothing', '', rules, false, 'ERR_JWS_INVALID'],
  ['a megabyte of dots', '.'.repeat(1 << 20), rules, false, 'ERR_JWS_INVALID'],
  ['a megabyte of claims', token({ ...valid, pad: 'x'.repeat(1 << 20) }, undefined, other), rules, false, 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED'],
  ['characters outside base64url', token(valid).replace('.', '.!'), rules, false],
  ['claims of 4n + 1 characters (no base64url)', token(`${json(valid)}A`.length % 4 === 1 ? `${json(valid)}A` : `${json(valid)}AA`), rules, false],
  ['the right issuer', token({ ...valid, iss: 'ocs' }), { ...rules, issuer: 'ocs' }, true],
  ['another issuer', token({ ...valid, iss: 'evil' }), { ...rules, issuer: 'ocs' }, false, 'ERR_JWT_CLAIM_VALIDATION_FAILED'],
  ['no issuer where one is required', token(valid), { ...rules, issuer: 'ocs' }, false, 'ERR_JWT_CLAIM_VALIDATION_FAILED'],
  ['the right audience', token({ ...valid, aud: 'chat' }), { ...rules, audience: 'chat' }, true],
  ['an audience list that has it', token({ ...valid, aud: ['mail', 'chat'] }), { ...rules, audience: 'chat' }, true],
  ['an audience list that lacks it', token({ ...valid, aud: ['mail'] }), { ...rules, audience: 'chat' }, false, 'ERR_JWT_CLAIM_VALIDATION_FAILED'],
  ['no audience where one is required', token(valid), { ...rules, audience: 'chat' }, false, 'ERR_JWT_CLAIM_VALIDATION_FAILED'],
];

describe('HS256 tokens: the server checks each as jose does', () => {
  for (const [what, jwt, r, accepted, failure] of cases) {
    test(`${what}: ${accepted ? 'accepted' : 'refused'}`, async () => {
      const ours = verifyJwt(jwt, r);
      assert.equal(ours.ok, accepted, JSON.stringify(ours));
      assert.equal(await joseAccepts(jwt, r), accepted, 'jose agrees');
      if (!ours.ok && failure !== undefined) assert.equal(ours.failure, failure);
      if (ours.ok) assert.equal(ours.claims.sub, 'alice');
    });
  }

  test("a signature spelled otherwise (the last character's 2 unused bits) is refused: jose takes it, and max_lifetime would see a new token", async () => {
    const good = token(valid);
    const last = good.at(-1)!;
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const base = alphabet.indexOf(last) & ~3;
    const variants = [0, 1, 2, 3].map((bits) => good.slice(0, -1) + alphabet[base + bits]).filter((v) => v !== good);
    assert.equal(variants.length, 3);
    for (const variant of variants) {
      assert.equal(await joseAccepts(variant, rules), true, 'the same bytes to jose');
      assert.deepEqual(verifyJwt(variant, rules), { ok: false, failure: 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED' });
    }
  });

  test('random corruptions of a valid token are refused (jose takes the other spellings of the signature only)', async () => {
    const good = token(valid);
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.!';
    let seed = 7;
    const random = (n: number): number => ((seed = (seed * 1103515245 + 12345) % 2 ** 31), seed % n);
    for (let i = 0; i < 300; i++) {
      const at = random(good.length);
      const changed = good.slice(0, at) + alphabet[random(alphabet.length)] + good.slice(at + 1);
      if (changed === good) continue;
      assert.equal(verifyJwt(changed, rules).ok, false, changed);
      if (at !== good.length - 1) assert.equal(await joseAccepts(changed, rules), false, changed);
    }
  });
});
