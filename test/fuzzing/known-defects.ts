/**
 * The defects of issue 8 the fuzzer found (1-4 were known before it ran; 5 was found writing
 * it; 7-10 are its finds), and the inputs the general properties leave out while one is open.
 *
 * Each defect has a regression case (regressions.ts), marked `todo` while the defect is `open`.
 * A new find: add it here with `open: true`, its regression case, and (only if the general
 * properties would otherwise keep failing on it) an exclusion below. Once it is fixed: set
 * `open` to false and drop its exclusion, so the properties cover that input again.
 *
 * All ten are fixed; the regression cases stay as tests, and no input is left out.
 */
import type { HttpRequestSpec, SessionSpec } from './arbitraries.js';

export interface Defect {
  n: number;
  title: string;
  /** Still to fix: its regression case runs as `todo`. */
  open: boolean;
}

export const DEFECTS = {
  adminPercent: { n: 1, open: false, title: 'an /admin request whose path has an undecodable %-escape (GET /admin/dlq/%) ends the whole process' },
  doubleAuth: { n: 2, open: false, title: 'two auth frames in one write are both accepted (two welcomes); once the connection closes, a message to the first user crashes its shard' },
  protoWeighted: { n: 3, open: false, title: 'weighted `any` to a group with a member named after an Object.prototype property (__proto__, constructor) delivers nothing' },
  farFutureAt: { n: 4, open: false, title: '`send` with `at` more than 2^31-1 ms ahead arms a timer Node cuts to 1 ms: the broker spins until then' },
  framesBehindAuth: { n: 5, open: false, title: 'frames pipelined behind a valid auth frame are refused with E_UNAUTHORIZED and close 4001' },
  httpCodes: { n: 6, open: false, title: 'HTTP refusals carry codes outside the table (not_found, unauthorized, forbidden)' },
  deepData: { n: 7, open: false, title: 'data nested some 16 500 levels deep passes the decoder, then overflows the stack of JSON.stringify in the shard: E_INTERNAL and an error log' },
  deepDeadLetter: { n: 8, open: false, title: 'a dead letter whose data is nested some 4 000 levels deep: GET /admin/dlq overflows JSON.stringify in the primary and the process dies' },
  longAdminId: { n: 9, open: false, title: 'GET /admin/dlq/ID with an ID of some 5 000 characters answers 500 E_INTERNAL ("String does not fit in target buffer", from the store) instead of 404' },
  hugeWeight: { n: 10, open: false, title: 'weight claims near Number.MAX_VALUE (1e308) overflow the weighted sums to Infinity and NaN: weighted `any` to their group stops delivering' },
} satisfies Record<string, Defect>;

export function describeDefect(defect: Defect): string {
  return `defect ${defect.n} of issue 8: ${defect.title}`;
}

/** The `todo` of a regression case or test: the defect while it is open, nothing once fixed. */
export function todo(defect: Defect): string | undefined {
  return defect.open ? describeDefect(defect) : undefined;
}

/** Inputs of an open defect that the general properties leave out (unless --include-known). */
export interface Exclusion<Input> {
  defect: Defect;
  hits(input: Input): boolean;
}

export const SESSION_EXCLUSIONS: ReadonlyArray<Exclusion<SessionSpec>> = [];
export const HTTP_EXCLUSIONS: ReadonlyArray<Exclusion<HttpRequestSpec>> = [];

/** The open defect a session would hit, if any. */
export function hitsKnownDefect(spec: SessionSpec): Defect | null {
  return SESSION_EXCLUSIONS.find((e) => e.hits(spec))?.defect ?? null;
}

/** The open defect an HTTP request would hit, if any. */
export function hitsKnownHttpDefect(req: HttpRequestSpec): Defect | null {
  return HTTP_EXCLUSIONS.find((e) => e.hits(req))?.defect ?? null;
}
