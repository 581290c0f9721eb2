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
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
}

/**
 * Any WebSocket class: `globalThis.WebSocket`, or `ws`'s default export. Typed loosely on
 * purpose: each implementation types its event objects its own way.
 */
export type WebSocketConstructor = new (url: string, protocols?: string | string[], options?: { maxPayload?: number }) => unknown;

export const OPEN = 1;

export function resolveWebSocket(given: WebSocketConstructor | undefined): WebSocketConstructor {
  if (given !== undefined) return given;
  const global = (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
  if (global === undefined) {
    throw new TypeError('no global WebSocket (Node.js before 22): pass one, e.g. `import WebSocket from "ws"` and `new OcsClient({ url, WebSocket })`');
  }
  return global;
}
