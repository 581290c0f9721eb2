/**
 * The check of an `authorization: Bearer TOKEN` header against a configured token, shared by
 * the monitoring and admin endpoints. The scheme is case-insensitive and may be surrounded by
 * spaces (RFC 9110 11.1; some clients send `bearer`); the token is compared by digests of
 * equal length in constant time, so that the comparison leaks neither the token nor its length.
 */
import { createHash, timingSafeEqual } from 'node:crypto';

const SCHEME = 'bearer';

/** Whether `header` carries `token`; null when no token is configured (the caller decides then). */
export function bearerCheck(token: string): ((header: string) => boolean) | null {
  if (token === '') return null;
  const expected = digest(token);
  return (header) => {
    const credential = credentialOf(header);
    // Compared even when the header is malformed, so that its shape does not change the time taken.
    return timingSafeEqual(digest(credential), expected) && credential !== '';
  };
}

/**
 * The token as configured (it may hold spaces: the config takes any string), '' when the header
 * is not `Bearer` and a credential. Read in one pass: a pattern with a lazy group before trailing
 * blanks (what this was) backtracks quadratically on a run of spaces, and one unauthenticated
 * header of 64,000 of them held a shard for 2 s.
 */
function credentialOf(header: string): string {
  let start = 0;
  let end = header.length;
  while (start < end && isBlank(header.charCodeAt(start))) start++;
  while (end > start && isBlank(header.charCodeAt(end - 1))) end--;
  const afterScheme = start + SCHEME.length;
  if (end <= afterScheme || !isBlank(header.charCodeAt(afterScheme))) return '';
  if (header.slice(start, afterScheme).toLowerCase() !== SCHEME) return '';
  start = afterScheme;
  while (start < end && isBlank(header.charCodeAt(start))) start++;
  return header.slice(start, end);
}

/** A space or a tab, the blanks RFC 9110 allows around the parts of a credential. */
function isBlank(code: number): boolean {
  return code === 0x20 || code === 0x09;
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}
