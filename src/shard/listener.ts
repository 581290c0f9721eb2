/**
 * A shard's listen socket: opened at start (port 0: picked and bound at once), closed for good
 * by a drain, and closed and opened again while the primary's open-file guard has the process
 * near its open-file limit (src/primary/open-file-guard.ts). Without a listen socket the kernel
 * refuses new connections, or gives them to the other listeners on the port (SO_REUSEPORT).
 */
import { bindFreePort } from '../util/free-port.js';
import type { Logger } from '../util/logger.js';
import { uWS, type TemplatedApp, type us_listen_socket } from '../util/uws.js';

/** How soon a listen socket that could not be opened again is tried again. */
const RETRY_MS = 1000;

export class Listener {
  private socket: us_listen_socket | null = null;
  private port: number | null = null;
  private closedForGood = false;
  private paused = false;
  private retry: NodeJS.Timeout | null = null;

  constructor(
    private readonly app: TemplatedApp,
    private readonly host: string,
    private readonly log: Logger,
  ) {}

  /** Listens on `wanted` (0: a free port, picked here); resolves with the port, or null when it cannot. */
  async open(wanted: number, paused: boolean): Promise<number | null> {
    this.paused = paused;
    const port = wanted === 0 ? await bindFreePort(this.host, (candidate) => this.listen(candidate)) : this.listen(wanted) ? wanted : null;
    this.port = port;
    // Bound, so the port is ours; but the guard says not to accept yet.
    if (port !== null && this.paused) this.closeSocket();
    return port;
  }

  /** A drain's first step, or a stop: no new connections, for good. */
  close(): void {
    this.closedForGood = true;
    if (this.retry) clearTimeout(this.retry);
    this.retry = null;
    this.closeSocket();
  }

  /** What the open-file guard says: closed while it says no, open again when it says yes. */
  setAccepting(on: boolean): void {
    this.paused = !on;
    if (this.closedForGood || this.port === null) return;
    if (on) this.reopen();
    else this.closeSocket();
  }

  private reopen(): void {
    if (this.paused || this.closedForGood || this.socket !== null) return;
    if (this.listen(this.port!)) return;
    // Out of descriptors again, or another process took the port meanwhile.
    this.log.warn({ code: 'E_STARTUP', host: this.host, port: this.port }, `cannot listen again; retrying in ${RETRY_MS} ms`);
    this.retry = setTimeout(() => {
      this.retry = null;
      this.reopen();
    }, RETRY_MS);
  }

  private listen(port: number): boolean {
    this.app.listen(this.host, port, (socket) => {
      this.socket = socket || null;
    });
    return this.socket !== null;
  }

  private closeSocket(): void {
    if (this.socket !== null) uWS.us_listen_socket_close(this.socket);
    this.socket = null;
  }
}
