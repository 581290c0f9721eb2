/**
 * The TLS settings (websocket.server.tls) checked at start-up, where a mistake can still name
 * its key: uWS's SSLApp given a missing file, a key that does not match its certificate or a
 * wrong passphrase does not say so; it starts, and every handshake fails.
 */
import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import { ConfigProblem } from './problem.js';
import type { Config } from './schema.js';

const FILES = ['websocket.server.tls.cert_file', 'websocket.server.tls.key_file'];

export type TlsSettings = Config['websocket']['server']['tls'];

/** Whether the server speaks TLS (wss://, https://) with these settings. */
export function tlsEnabled(tls: TlsSettings): boolean {
  return tls.cert_file !== '' || tls.key_file !== '';
}

/** Throws E_CONFIG naming the key when TLS is asked for and its files cannot serve a handshake. */
export function checkTlsFiles(tls: TlsSettings): void {
  if (!tlsEnabled(tls)) return;
  const key = 'websocket.server.tls';
  if (tls.cert_file === '' || tls.key_file === '') {
    throw new ConfigProblem(FILES, `${key}: cert_file and key_file go together (${tls.cert_file === '' ? 'cert_file' : 'key_file'} is empty)`);
  }
  const read = (name: 'cert_file' | 'key_file'): Buffer => {
    try {
      return readFileSync(tls[name]);
    } catch (err) {
      throw new ConfigProblem([`${key}.${name}`], `${key}.${name}: cannot read ${tls[name]}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    }
  };
  const cert = read('cert_file');
  const privateKey = read('key_file');
  try {
    createSecureContext({ cert, key: privateKey, passphrase: tls.passphrase === '' ? undefined : tls.passphrase });
  } catch (err) {
    // OpenSSL's own words: "key values mismatch", "bad decrypt" (the passphrase), "no start line" (not PEM).
    throw new ConfigProblem([...FILES, `${key}.passphrase`], `${key}: ${tls.cert_file} and ${tls.key_file} cannot serve TLS: ${(err as Error).message}`);
  }
}
