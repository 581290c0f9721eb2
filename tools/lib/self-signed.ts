/**
 * Self-signed certificates for 127.0.0.1, made with the `openssl` command (Debian's openssl
 * package): for the server's TLS tests and a private rediss:// Redis (redis-server.ts).
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface Certificate {
  certFile: string;
  keyFile: string;
  /** The certificate, for a client to trust (`ca`). */
  ca: Buffer;
}

/** Whether the openssl command is there; without it the server's TLS tests skip and say so. */
export const HAVE_OPENSSL = spawnSync('openssl', ['version'], { stdio: 'ignore' }).status === 0;

/** A P-256 key and a one-day certificate for 127.0.0.1 in a fresh directory; the key encrypted with `passphrase` when given. */
export function selfSigned(passphrase?: string, dir = mkdtempSync(join(tmpdir(), 'ocs-tls-'))): Certificate {
  const certFile = join(dir, 'cert.pem');
  const keyFile = join(dir, 'key.pem');
  const keyArgs = passphrase === undefined ? ['-nodes'] : ['-passout', `pass:${passphrase}`];
  const made = spawnSync(
    'openssl',
    ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', ...keyArgs, '-keyout', keyFile, '-out', certFile, '-days', '1', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  if (made.status !== 0) throw new Error(`openssl could not make a certificate: ${made.stderr.toString()}`);
  return { certFile, keyFile, ca: readFileSync(certFile) };
}
