/**
 * Who a connection is: a JWT (HS256, `jose`) or, when the config allows it, an anonymous
 * `?user=ID`. The token's `sub` is the user; its optional `groups` claim (names and
 * `prefix.*` patterns) limits which groups the user may join and publish to.
 */
import { jwtVerify, errors as joseErrors, type JWTVerifyOptions } from 'jose';
import type { Config } from '../config/schema.js';
import { NAME_PATTERN } from '../protocol/frames.js';

export interface Identity {
  user: string;
  /** null: every group allowed. */
  groups: GroupMatcher | null;
  /** The `weight` claim (a positive number) for `any` with the weighted strategy; 0 when absent. */
  weight: number;
}

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

/** `name`, `prefix.*` or `*`: a name whose last character may be a wildcard. */
const GROUP_PATTERN = /^(?:[A-Za-z0-9_.:@/#+-]{1,128}|[A-Za-z0-9_.:@/#+-]{0,127}\*)$/;

export class Authenticator {
  private readonly key: Uint8Array | null;
  private readonly options: JWTVerifyOptions;
  readonly allowAnonymous: boolean;

  constructor(auth: Config['websocket']['auth']) {
    this.key = auth.secret === '' ? null : new TextEncoder().encode(auth.secret);
    this.allowAnonymous = auth.allow_anonymous;
    this.options = {
      algorithms: ['HS256'],
      clockTolerance: auth.clock_tolerance,
      ...(auth.issuer ? { issuer: auth.issuer } : {}),
      ...(auth.audience ? { audience: auth.audience } : {}),
    };
  }

  async verify(token: string): Promise<IdentityResult> {
    if (this.key === null) return { ok: false, reason: 'tokens are not accepted: no websocket.auth.secret is configured' };
    let payload;
    try {
      ({ payload } = await jwtVerify(token, this.key, this.options));
    } catch (err) {
      if (err instanceof joseErrors.JWTExpired) return { ok: false, reason: 'token expired' };
      if (err instanceof joseErrors.JOSEError) return { ok: false, reason: `bad token: ${err.code}` };
      return { ok: false, reason: 'bad token' };
    }
    const user = payload.sub;
    if (typeof user !== 'string' || !NAME_PATTERN.test(user)) return { ok: false, reason: 'token sub is missing or not a valid user id' };
    const weightClaim = payload.weight;
    if (weightClaim !== undefined && (typeof weightClaim !== 'number' || !(weightClaim > 0) || !Number.isFinite(weightClaim))) {
      return { ok: false, reason: 'token weight claim must be a positive number' };
    }
    const weight = weightClaim ?? 0;
    const claim = payload.groups;
    if (claim === undefined) return { ok: true, identity: { user, groups: null, weight } };
    if (!Array.isArray(claim) || !claim.every((g) => typeof g === 'string' && GROUP_PATTERN.test(g))) {
      return { ok: false, reason: 'token groups claim must be an array of group names or prefix.* patterns' };
    }
    return { ok: true, identity: { user, groups: new GroupMatcher(claim as string[]), weight } };
  }

  anonymous(user: string): IdentityResult {
    if (!this.allowAnonymous) return { ok: false, reason: 'anonymous connections are disabled: send a token' };
    if (!NAME_PATTERN.test(user)) return { ok: false, reason: 'user must match ' + NAME_PATTERN.source };
    return { ok: true, identity: { user, groups: null, weight: 0 } };
  }
}
