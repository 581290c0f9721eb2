/**
 * The part of the WebSocket API the client uses: what browsers, Node 22+ (global WebSocket)
 * and the `ws` package (Node 20) all have. The constructor is injectable so that the client
 * itself imports nothing from Node.
 */
export interface WebSocketLike {
  readonly readyState: number;
  readonly protocol: string;
  binaryType: string;
  send(data: string | Uint8Array): void;
  close(code?: number, reason?: string): void;
  /** `ws` (Node) only: drops the TCP connection without the close handshake. */
  terminate?(): void;
  /** `ws` (Node) only: its events, of which onBytes() uses 'upgrade' and 'open'. */
  on?(event: string, listener: (response?: { socket?: unknown }) => void): unknown;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
}

/**
 * Any WebSocket class: `globalThis.WebSocket`, or `ws`'s default export. Typed loosely on
 * purpose: each implementation types its event objects its own way.
 */
export type WebSocketConstructor = new (url: string, protocols?: string | string[], options?: { maxPayload?: number; closeTimeout?: number }) => unknown;

export const OPEN = 1;
export const CLOSING = 2;

/**
 * Calls `onChunk` for each chunk of bytes the TCP (or TLS) socket under `socket` reads, once
 * `ws` has handled it: a frame still arriving, and a close frame the WebSocket API tells of
 * only when the TCP connection ends. `ws` (Node) only, through its public 'upgrade' event (whose
 * response's `socket` is the TCP socket); listened to from 'open', after `ws`'s own listener.
 * Elsewhere never called: a browser tells of whole messages only.
 */
export function onBytes(socket: WebSocketLike, onChunk: () => void): void {
  socket.on?.('upgrade', (response) => {
    const tcp = response?.socket as { on?(event: 'data', listener: () => void): unknown } | undefined;
    if (typeof tcp?.on === 'function') socket.on!('open', () => void tcp.on!('data', onChunk));
  });
}

export function resolveWebSocket(given: WebSocketConstructor | undefined): WebSocketConstructor {
  if (given !== undefined) return given;
  const global = (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
  if (global === undefined) {
    throw new TypeError('no global WebSocket (Node.js before 22): pass one, e.g. `import WebSocket from "ws"` and `new OcsClient({ url, WebSocket })`');
  }
  return global;
}
