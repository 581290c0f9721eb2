/**
 * A test client on a raw TCP socket (the project's own tools/wsclient), for what the `ws` package
 * cannot do: several frames in ONE socket write, as a fast client, a proxy or a reconnecting
 * SDK flushing its queue delivers them, so the server reads them in one go and handles them
 * back to back, before any asynchronous work of the first one (a token check) has finished.
 * Frames received are queued like test/helpers/client.ts's: `await raw.next((f) => ...)`.
 */
import { connectWs, type WsClient } from '../../tools/wsclient/client.js';
import { FrameQueue, type Frame, type TestClient } from './client.js';

export interface RawClient extends Pick<TestClient, 'frames' | 'next' | 'closed' | 'close'> {
  /** Each value JSON-encoded as one masked text frame, all of them in one socket write. */
  sendMany(frames: unknown[]): void;
}

export interface RawConnectOptions {
  query?: string;
  /** Sent in one write the moment the upgrade is answered (before the promise resolves). */
  onOpen?: unknown[];
}

/** Connects to ws://127.0.0.1:PORT/ws; rejects with `status` set when the upgrade is refused. */
export function connectRaw(port: number, options: RawConnectOptions = {}): Promise<RawClient> {
  let open = false;
  let isClosed = false;
  const queue = new FrameQueue(() => isClosed);
  let resolveClosed!: (value: { code: number; reason: string }) => void;
  const closed = new Promise<{ code: number; reason: string }>((resolve) => (resolveClosed = resolve));
  return new Promise((resolve, reject) => {
    let failure: Error | null = null;
    const ws: WsClient = connectWs({
      host: '127.0.0.1',
      port,
      path: `/ws${options.query ? `?${options.query}` : ''}`,
      copyPayloads: true,
      onOpen() {
        open = true;
        if (options.onOpen) client.sendMany(options.onOpen);
        resolve(client);
      },
      onMessage: (payload) => queue.push(JSON.parse(payload.toString()) as Frame),
      onError(err) {
        failure = err;
      },
      onClose(code, reason) {
        isClosed = true;
        resolveClosed({ code, reason });
        queue.wake();
        if (!open) reject(Object.assign(failure ?? new Error(`closed with ${code} before the upgrade`), { status: (failure as { httpStatus?: number } | null)?.httpStatus }));
      },
    });
    const client: RawClient = {
      frames: queue.frames,
      sendMany: (frames) => void ws.sendMany(frames.map((frame) => JSON.stringify(frame))),
      next: (match, timeoutMs) => queue.next(match, timeoutMs),
      closed,
      close: () => ws.close(),
    };
  });
}
