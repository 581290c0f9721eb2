/**
 * The opening handshake of the raw WebSocket client (RFC 6455 4.1): the request it writes,
 * and the checks of the server's 101 response (status, Upgrade, Connection,
 * Sec-WebSocket-Accept, no extension we did not offer, a protocol we offered). No socket here.
 */
import { createHash } from 'node:crypto';

const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
/** An HTTP response head larger than this is not a WebSocket server talking. */
const MAX_RESPONSE_HEAD = 16 * 1024;

/** A refused upgrade: the server answered the handshake with a status other than 101. */
export class WsHandshakeError extends Error {
  readonly httpStatus: number;
  constructor(httpStatus: number, statusLine: string) {
    super(`WebSocket upgrade refused: ${statusLine}`);
    this.name = 'WsHandshakeError';
    this.httpStatus = httpStatus;
  }
}

export interface HandshakeRequest {
  host: string;
  port: number;
  /** Request target including the query string. */
  path: string;
  protocols?: string[];
  headers?: Record<string, string>;
}

/** The upgrade request; throws when an extra header would smuggle a line break. */
export function requestHead(req: HandshakeRequest, key: string): string {
  const { host, port, path, protocols, headers } = req;
  let head =
    `GET ${path} HTTP/1.1\r\n` +
    `Host: ${host.includes(':') ? `[${host}]` : host}:${port}\r\n` +
    'Upgrade: websocket\r\n' +
    'Connection: Upgrade\r\n' +
    `Sec-WebSocket-Key: ${key}\r\n` +
    'Sec-WebSocket-Version: 13\r\n';
  if (protocols && protocols.length > 0) head += `Sec-WebSocket-Protocol: ${protocols.join(', ')}\r\n`;
  if (headers) {
    for (const name of Object.keys(headers)) {
      const value = headers[name]!;
      if (/[\r\n]/.test(name) || /[\r\n]/.test(value)) throw new Error(`header ${name} contains CR or LF`);
      head += `${name}: ${value}\r\n`;
    }
  }
  return head + '\r\n';
}

/** What a read did to the handshake. */
export type HandshakeStep =
  /** The head is not complete yet: keep `head` and read on. */
  | { kind: 'incomplete'; head: Buffer }
  | { kind: 'failed'; error: Error }
  /** Upgraded: frames start at `frameOffset` in the read's data. */
  | { kind: 'open'; protocol: string; frameOffset: number };

/**
 * Adds one read (`data`) to the response head read so far (`previous`) and, once the head is
 * complete, checks it against our `key` and the protocols we offered.
 */
export function readHandshake(previous: Buffer, data: Buffer, key: string, offeredProtocols: readonly string[]): HandshakeStep {
  // The head is small and arrives once, so concatenating here costs nothing worth saving.
  const head = previous.length === 0 ? Buffer.from(data) : Buffer.concat([previous, data]);
  const end = head.indexOf('\r\n\r\n');
  if (end < 0) {
    if (head.length > MAX_RESPONSE_HEAD) return { kind: 'failed', error: new Error('WebSocket handshake response head too large') };
    return { kind: 'incomplete', head };
  }
  const lines = head.toString('latin1', 0, end).split('\r\n');
  const statusLine = lines[0] ?? '';
  const status = /^HTTP\/1\.[01] (\d{3})/.exec(statusLine);
  if (!status) return { kind: 'failed', error: new Error(`WebSocket handshake: malformed status line ${JSON.stringify(statusLine)}`) };
  const httpStatus = Number(status[1]);
  if (httpStatus !== 101) return { kind: 'failed', error: new WsHandshakeError(httpStatus, statusLine) };
  const fields = new Map<string, string>();
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const colon = line.indexOf(':');
    if (colon > 0) fields.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
  }
  const problem = checkUpgradeHeaders(fields, key, offeredProtocols);
  if (problem) return { kind: 'failed', error: new Error(`WebSocket handshake: ${problem}`) };
  // Bytes after the head are already frames; `data` is the read buffer, so offset into it.
  return { kind: 'open', protocol: fields.get('sec-websocket-protocol') ?? '', frameOffset: data.length - (head.length - (end + 4)) };
}

function checkUpgradeHeaders(fields: Map<string, string>, key: string, offeredProtocols: readonly string[]): string | null {
  if (fields.get('upgrade')?.toLowerCase() !== 'websocket') return 'missing Upgrade: websocket';
  if (!/(^|,)\s*upgrade\s*(,|$)/i.test(fields.get('connection') ?? '')) return 'missing Connection: upgrade';
  const expected = createHash('sha1').update(key + WS_GUID).digest('base64');
  if (fields.get('sec-websocket-accept') !== expected) return 'bad Sec-WebSocket-Accept';
  if (fields.get('sec-websocket-extensions')) return 'server chose an extension that was not offered';
  const chosen = fields.get('sec-websocket-protocol');
  if (chosen !== undefined && !offeredProtocols.includes(chosen)) {
    return `server chose protocol ${JSON.stringify(chosen)} that was not offered`;
  }
  return null;
}
