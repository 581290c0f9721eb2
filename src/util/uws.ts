/**
 * Loads uWebSockets.js and refuses the mirror's silent JavaScript fallback: the fallback is
 * many times slower and lacks what the shards rely on, so running on it would be a lie.
 */
import { createRequire } from 'node:module';
import { dirname } from 'node:path';
import type * as UWS from 'uWebSockets.js';
import { tlsEnabled, type TlsSettings } from '../config/tls-files.js';
import { OcsError } from '../protocol/errors.js';

const require = createRequire(import.meta.url);

function loadNative(): typeof UWS {
  const entry = require.resolve('uWebSockets.js');
  const packageDir = dirname(dirname(entry));
  // The mirror prints its own warning through console.warn when it falls back; silence it,
  // we explain the failure ourselves.
  const warn = console.warn;
  console.warn = () => {};
  let uws: typeof UWS;
  try {
    uws = require('uWebSockets.js') as typeof UWS;
  } finally {
    console.warn = warn;
  }
  const native = Object.keys(require.cache).some((path) => path.startsWith(packageDir) && path.endsWith('.node'));
  if (!native || typeof uws.SSLApp !== 'function') {
    throw new OcsError(
      'E_STARTUP',
      `uWebSockets.js native binary did not load for ${process.platform}-${process.arch} node ABI ${process.versions.modules}; ` +
        'refusing to run on the slow JavaScript fallback (install a uWebSockets.js build for this Node.js, and unset UWS_USE_FALLBACK)',
    );
  }
  return uws;
}

export const uWS = loadNative();
export type { HttpRequest, HttpResponse, TemplatedApp, WebSocket, us_listen_socket, us_socket_context_t } from 'uWebSockets.js';

/**
 * Every line of a request header, in order, joined with commas: a header sent on several lines
 * means their comma-separated list (RFC 9110 5.3), and getHeader() gives the first line only.
 * Call it before the handler returns (uWS's request is gone after).
 */
export function headerList(req: UWS.HttpRequest, name: string): string {
  let all = '';
  req.forEach((key, value) => {
    if (key === name) all = all === '' ? value : `${all},${value}`;
  });
  return all;
}

/** A uWS app: TLS (wss://, https://) when the settings name a certificate, else plain. */
export function createApp(tls: TlsSettings): UWS.TemplatedApp {
  if (!tlsEnabled(tls)) return uWS.App();
  return uWS.SSLApp({ cert_file_name: tls.cert_file, key_file_name: tls.key_file, passphrase: tls.passphrase });
}
