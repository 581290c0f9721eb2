// The live heap of every thread of a server started with `--inspect=127.0.0.1:PORT`, through
// the V8 inspector (Chrome DevTools Protocol) rather than anything the server offers: a full
// collection in each thread (HeapProfiler.collectGarbage), then its heap in use
// (Runtime.getHeapUsage), so that garbage an idle server keeps (its memory reducer is off,
// src/ops/memory-reducer-off.ts) is not taken for a leak; and, when asked, a heap snapshot of
// each thread written to a file (open it in Chrome DevTools, Memory tab). Worker threads (the
// shards, the codec pool) are reached through the main thread's session (NodeWorker domain).
import { createWriteStream, type WriteStream } from 'node:fs';
import WebSocket from 'ws';

export interface ThreadHeap {
  /** 'main' for the primary, else the worker's url file name and its id, e.g. 'shard.js#1'. */
  thread: string;
  usedBytes: number;
  totalBytes: number;
  /** Memory outside the V8 heap that this thread's objects hold (ArrayBuffers and other external memory): process.memoryUsage() in the thread. */
  externalBytes: number | null;
  arrayBuffersBytes: number | null;
}

interface Pending {
  resolve(result: Record<string, unknown>): void;
  reject(err: Error): void;
  timer: NodeJS.Timeout;
}

interface Session {
  /** undefined: the main thread's own session. */
  sessionId?: string;
  name: string;
  nextId: number;
  pending: Map<number, Pending>;
  /** The file a snapshot being taken goes to. */
  snapshot: WriteStream | null;
}

const TIMEOUT_MS = 60_000;

export class InspectorHeap {
  private readonly main: Session = { name: 'main', nextId: 1, pending: new Map(), snapshot: null };
  private readonly workers = new Map<string, Session>();

  private constructor(private readonly ws: WebSocket) {
    ws.on('message', (data: Buffer) => this.onMessage(this.main, JSON.parse(data.toString()) as Record<string, unknown>));
    ws.on('error', () => undefined);
  }

  /** Connects to the inspector on 127.0.0.1:`port` (retrying while the process starts) and attaches to every worker thread, present and future. */
  static async connect(port: number, waitMs = 20_000): Promise<InspectorHeap> {
    const until = Date.now() + waitMs;
    let url: string | undefined;
    while (url === undefined) {
      try {
        const list = (await (await fetch(`http://127.0.0.1:${port}/json/list`)).json()) as Array<{ webSocketDebuggerUrl?: string }>;
        url = list[0]?.webSocketDebuggerUrl;
      } catch {
        // not listening yet
      }
      if (url === undefined) {
        if (Date.now() > until) throw new Error(`no inspector on 127.0.0.1:${port}`);
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    }
    const ws = new WebSocket(url, { perMessageDeflate: false, maxPayload: 1 << 30 });
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    const inspector = new InspectorHeap(ws);
    await inspector.call(inspector.main, 'NodeWorker.enable', { waitForDebuggerOnStart: false });
    await new Promise((resolve) => setTimeout(resolve, 300)); // the attachedToWorker events of the threads already running
    return inspector;
  }

  /** Thread names known now: 'main' and every worker attached. */
  threads(): string[] {
    return ['main', ...[...this.workers.values()].map((s) => s.name)];
  }

  /** A full collection in every thread, then each one's heap in use. A thread that does not answer (it ended meanwhile) is left out. */
  async liveHeaps(): Promise<ThreadHeap[]> {
    const sessions = [this.main, ...this.workers.values()];
    const results = await Promise.all(
      sessions.map(async (s) => {
        try {
          await this.call(s, 'HeapProfiler.collectGarbage');
          const usage = await this.call(s, 'Runtime.getHeapUsage');
          let externalBytes: number | null = null;
          let arrayBuffersBytes: number | null = null;
          try {
            const answer = await this.call(s, 'Runtime.evaluate', { expression: 'JSON.stringify(process.memoryUsage())', returnByValue: true });
            const mem = JSON.parse(String((answer.result as { value?: unknown } | undefined)?.value)) as { external: number; arrayBuffers: number };
            externalBytes = mem.external;
            arrayBuffersBytes = mem.arrayBuffers;
          } catch {
            // no process object in that context
          }
          return { thread: s.name, usedBytes: Number(usage.usedSize), totalBytes: Number(usage.totalSize), externalBytes, arrayBuffersBytes };
        } catch {
          return null;
        }
      }),
    );
    return results.filter((r): r is ThreadHeap => r !== null);
  }

  /** A heap snapshot of every thread (one after the other: each stops its thread while taken), to `prefix`-THREAD.heapsnapshot; the files written. */
  async snapshots(prefix: string): Promise<string[]> {
    const files: string[] = [];
    for (const s of [this.main, ...this.workers.values()]) {
      const file = `${prefix}-${s.name.replace(/[^A-Za-z0-9_.-]/g, '_')}.heapsnapshot`;
      s.snapshot = createWriteStream(file);
      try {
        await this.call(s, 'HeapProfiler.takeHeapSnapshot', { reportProgress: false });
        files.push(file);
      } catch {
        // the thread ended meanwhile
      } finally {
        const stream = s.snapshot;
        s.snapshot = null;
        await new Promise<void>((resolve) => stream.end(resolve));
      }
    }
    return files;
  }

  close(): void {
    this.ws.close();
  }

  private call(s: Session, method: string, params: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
    const id = s.nextId++;
    const message = JSON.stringify({ id, method, params });
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        s.pending.delete(id);
        reject(new Error(`${s.name}: ${method} unanswered`));
      }, TIMEOUT_MS);
      s.pending.set(id, { resolve, reject, timer });
      if (s.sessionId === undefined) this.ws.send(message);
      else this.ws.send(JSON.stringify({ id: this.main.nextId++, method: 'NodeWorker.sendMessageToWorker', params: { sessionId: s.sessionId, message } }));
    });
  }

  private onMessage(s: Session, msg: Record<string, unknown>): void {
    if (typeof msg.id === 'number') {
      const p = s.pending.get(msg.id);
      if (!p) return;
      s.pending.delete(msg.id);
      clearTimeout(p.timer);
      if (msg.error) p.reject(new Error(`${s.name}: ${JSON.stringify(msg.error)}`));
      else p.resolve((msg.result ?? {}) as Record<string, unknown>);
      return;
    }
    const params = (msg.params ?? {}) as Record<string, unknown>;
    switch (msg.method) {
      case 'HeapProfiler.addHeapSnapshotChunk':
        s.snapshot?.write(String(params.chunk));
        return;
      case 'NodeWorker.attachedToWorker': {
        const info = params.workerInfo as { workerId: string; url: string; title: string };
        const sessionId = String(params.sessionId);
        const file = (info.url || info.title || 'worker').split('/').pop();
        this.workers.set(sessionId, { sessionId, name: `${file}#${info.workerId}`, nextId: 1, pending: new Map(), snapshot: null });
        return;
      }
      case 'NodeWorker.detachedFromWorker': {
        const gone = this.workers.get(String(params.sessionId));
        this.workers.delete(String(params.sessionId));
        for (const p of gone?.pending.values() ?? []) {
          clearTimeout(p.timer);
          p.reject(new Error(`${gone!.name} detached`));
        }
        return;
      }
      case 'NodeWorker.receivedMessageFromWorker': {
        const w = this.workers.get(String(params.sessionId));
        if (w) this.onMessage(w, JSON.parse(String(params.message)) as Record<string, unknown>);
        return;
      }
      default:
    }
  }
}
