/**
 * The check of an `authorization: Bearer TOKEN` header against a configured token, shared by
 * the monitoring and admin endpoints. The scheme is case-insensitive and may be surrounded by
 * spaces (RFC 9110 11.1; some clients send `bearer`); the token is compared by digests of
 * equal length in constant time, so that the comparison leaks neither the token nor its length.
 */
import { createHash, timingSafeEqual } from 'node:crypto';

/** The scheme, then the token as configured (it may hold spaces: the config takes any string). */
const BEARER = /^[ \t]*bearer[ \t]+(.*?)[ \t]*$/i;

/** Whether `header` carries `token`; null when no token is configured (the caller decides then). */
export function bearerCheck(token: string): ((header: string) => boolean) | null {
  if (token === '') return null;
  const expected = digest(token);
  return (header) => {
    const credential = BEARER.exec(header)?.[1] ?? '';
    // Compared even when the header is malformed, so that its shape does not change the time taken.
    return timingSafeEqual(digest(credential), expected) && credential !== '';
  };
}

function digest(value: string): Buffer {
  return createHash('sha256').update(value).digest();
}
