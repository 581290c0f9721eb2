/**
 * Who a connection is: a JWT (HS256, jwt.ts) or, when the config allows it, an anonymous
 * `?user=ID`. The token's `sub` is the user; its optional `groups` claim (names and
 * `prefix.*` patterns) limits which groups the user may join and publish to.
 */
import { createHash } from 'node:crypto';
import { verifyJwt, type JwtRules } from './jwt.js';
import { MAX_WEIGHT } from '../config/delivery-schema.js';
import type { Config } from '../config/schema.js';
import { GROUP_PATTERN, NAME_PATTERN, SERVER_SENDER } from '../protocol/frames.js';

export interface Identity {
  user: string;
  /** null: every group allowed. */
  groups: GroupMatcher | null;
  /** The `weight` claim (a positive number up to MAX_WEIGHT) for `any` with the weighted strategy; 0 when absent. */
  weight: number;
  /**
   * Epoch ms after which the connection must present a fresh token or be closed with 4001:
   * the token's `exp` (plus `clock_tolerance`, as when it was verified), capped by
   * `max_lifetime`; Infinity for anonymous users and tokens that
   * may not expire (`require_exp: false`, no `exp`, no `max_lifetime`).
   */
  expiresAt: number;
  /**
   * With `max_lifetime`, which token this is (a digest): a connection that presents the same
   * token again keeps the expiry it had, or re-sending one token would extend its life forever.
   * Null without `max_lifetime` (the token's `exp` is the same each time) and for anonymous users.
   */
  tokenKey: string | null;
}

/**
 * Anonymous ids get this prefix whenever tokens can be verified too, and no token's `sub` may
 * carry it: an anonymous client can then never claim a verified user's id (and messages).
 */
export const ANONYMOUS_PREFIX = 'anon:';

export type IdentityResult = { ok: true; identity: Identity } | { ok: false; reason: string };

export class GroupMatcher {
  private readonly exact = new Set<string>();
  private readonly prefixes: string[] = [];

  constructor(patterns: readonly string[]) {
    for (const pattern of patterns) {
      if (pattern.endsWith('*')) this.prefixes.push(pattern.slice(0, -1));
      else this.exact.add(pattern);
    }
  }

  allows(group: string): boolean {
    if (this.exact.has(group)) return true;
    for (const prefix of this.prefixes) if (group.startsWith(prefix)) return true;
    return false;
  }
}

/**
 * How clients may identify: `jwt` (tokens only), `anonymous` (`?user=ID`, no secret to check a
 * token with), `jwt+anonymous` (both, anonymous ids as `anon:ID`), or `closed` (neither: no
 * secret, anonymous mode off; every client is refused until a secret is set).
 */
export type AuthMode = 'jwt' | 'anonymous' | 'jwt+anonymous' | 'closed';

export function authMode(auth: Pick<Config['websocket']['auth'], 'secret' | 'allow_anonymous'>): AuthMode {
  if (auth.secret === '') return auth.allow_anonymous ? 'anonymous' : 'closed';
  return auth.allow_anonymous ? 'jwt+anonymous' : 'jwt';
}

export class Authenticator {
  private readonly rules: JwtRules | null;
  private readonly maxLifetimeMs: number;
  private readonly clockToleranceMs: number;
  readonly allowAnonymous: boolean;
  /** What anonymous users may use while tokens are accepted too; null: every group (no secret). */
  private readonly anonymousGroups: GroupMatcher | null;

  constructor(auth: Config['websocket']['auth']) {
    const key = auth.secret === '' ? null : new TextEncoder().encode(auth.secret);
    this.rules = key && { key, issuer: auth.issuer, audience: auth.audience, requireExp: auth.require_exp, clockToleranceS: auth.clock_tolerance };
    this.allowAnonymous = auth.allow_anonymous;
    this.anonymousGroups = this.rules === null ? null : new GroupMatcher(auth.anonymous_groups);
    this.maxLifetimeMs = auth.max_lifetime > 0 ? auth.max_lifetime * 1000 : Infinity;
    this.clockToleranceMs = auth.clock_tolerance * 1000;
  }

  /** Neither tokens nor anonymous ids are accepted (authMode 'closed'): every client is refused at its upgrade. */
  get acceptsNobody(): boolean {
    return this.rules === null && !this.allowAnonymous;
  }

  /** Synchronous (jwt.ts says why). */
  verify(token: string): IdentityResult {
    if (this.rules === null) return { ok: false, reason: 'tokens are not accepted: no websocket.auth.secret is configured' };
    const checked = verifyJwt(token, this.rules);
    if (!checked.ok) {
      if (checked.failure === 'expired') return { ok: false, reason: 'token expired' };
      if (checked.failure === 'no_exp') return { ok: false, reason: 'token has no exp claim (websocket.auth.require_exp)' };
      return { ok: false, reason: `bad token: ${checked.failure}` };
    }
    const payload = checked.claims as { sub?: unknown; exp?: unknown; weight?: unknown; groups?: unknown };
    const user = payload.sub;
    if (typeof user !== 'string' || !NAME_PATTERN.test(user)) return { ok: false, reason: 'token sub is missing or not a valid user id' };
    if (user.startsWith(ANONYMOUS_PREFIX)) return { ok: false, reason: `token sub may not start with ${ANONYMOUS_PREFIX} (reserved for anonymous users)` };
    if (user === SERVER_SENDER) return { ok: false, reason: `token sub may not be ${SERVER_SENDER} (the sender of the server's own messages)` };
    // A token accepted within the tolerance past its exp must not be closed at once for it.
    const expiresAt = Math.min(typeof payload.exp === 'number' ? payload.exp * 1000 + this.clockToleranceMs : Infinity, Date.now() + this.maxLifetimeMs);
    // Of the signed part: what the token says, however its signature is spelled.
    const tokenKey = this.maxLifetimeMs === Infinity ? null : createHash('sha256').update(token.slice(0, token.lastIndexOf('.'))).digest('base64');
    const weightClaim = payload.weight;
    if (weightClaim !== undefined && (typeof weightClaim !== 'number' || !(weightClaim > 0) || !(weightClaim <= MAX_WEIGHT))) {
      return { ok: false, reason: `token weight claim must be a positive number of at most ${MAX_WEIGHT}` };
    }
    const weight = weightClaim ?? 0;
    const claim = payload.groups;
    if (claim === undefined) return { ok: true, identity: { user, groups: null, weight, expiresAt, tokenKey } };
    if (!Array.isArray(claim) || !claim.every((g) => typeof g === 'string' && GROUP_PATTERN.test(g))) {
      return { ok: false, reason: 'token groups claim must be an array of group names or prefix.* patterns' };
    }
    return { ok: true, identity: { user, groups: new GroupMatcher(claim as string[]), weight, expiresAt, tokenKey } };
  }

  /** `?user=ID`: the id as given while no secret is set, `anon:ID` when tokens can be verified too. */
  anonymous(user: string): IdentityResult {
    if (!this.allowAnonymous) return { ok: false, reason: 'anonymous connections are disabled: send a token' };
    const id = this.rules === null || user.startsWith(ANONYMOUS_PREFIX) ? user : ANONYMOUS_PREFIX + user;
    if (!NAME_PATTERN.test(id)) return { ok: false, reason: 'user must match ' + NAME_PATTERN.source };
    if (id === SERVER_SENDER) return { ok: false, reason: `user may not be ${SERVER_SENDER} (the sender of the server's own messages)` };
    return { ok: true, identity: { user: id, groups: this.anonymousGroups, weight: 0, expiresAt: Infinity, tokenKey: null } };
  }
}
