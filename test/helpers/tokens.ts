/** HS256 tokens for tests of servers with `websocket.auth.secret` set. */
import { SignJWT } from 'jose';

export interface TokenOptions {
  sub?: string;
  /** `exp`: a jose time span ('1h') or epoch seconds; default one hour from now. */
  exp?: string | number;
  secret: string;
}

export function signToken(claims: Record<string, unknown>, options: TokenOptions): Promise<string> {
  let jwt = new SignJWT(claims).setProtectedHeader({ alg: 'HS256' }).setIssuedAt();
  if (options.sub !== undefined) jwt = jwt.setSubject(options.sub);
  return jwt.setExpirationTime(options.exp ?? '1h').sign(new TextEncoder().encode(options.secret));
}
