// A target server started with its connections joined and held: what bench:interleaved loads
// in turns and bench:idle leaves idle. Counts the `msg` frames its clients receive and their
// latency (the data's `t`, epoch ms when published); reads its threads' CPU and wake-ups;
// stops (SIGSTOP) and resumes the whole process.
import { performance } from 'node:perf_hooks';
import type { Histogram } from 'hdr-histogram-js';
import { connectWs, type WsClient } from '../../wsclient/client.js';
import { newHistogram, recordMs } from '../../lib/histogram.js';
import { allThreadsStopped, threadCpuUs, threadWakeups } from '../../lib/proc.js';
import { startServer, type ServerProcess } from '../../lib/server-process.js';
import { PLACEMENT_ATTEMPTS } from './broadcast-load.js';
import { placementOf, prepareTarget, type PreparedTarget, type TargetName } from './broadcast-targets.js';
import { groupOf } from './broadcast-plan.js';

const JOIN_CONCURRENCY = 50;
/** Longest wait, after SIGSTOP, for every thread to have stopped. */
const FREEZE_WAIT_MAX_MS = 1000;
const T_FIELD = '"t":';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export interface LoadShape {
  connections: number;
  groups: number;
  /** Extra `node` arguments for the server process. */
  nodeArgs?: string[];
  /** Another build's server (its dist/src/main.js) for a real-server target: a before and after in one run. */
  serverMain?: string;
}

/** One server with its connections, counting what it delivers. */
export class LoadedServer {
  readonly clients: WsClient[] = [];
  delivered = 0;
  /** Connections opened again because they landed on another shard than their group's (by-shard). */
  reopened = 0;
  latency: Histogram = newHistogram();

  private constructor(
    readonly name: TargetName,
    private readonly prepared: PreparedTarget,
    readonly server: ServerProcess,
    private readonly groups: number,
  ) {}

  /** Acceptor threads the server runs. */
  get shards(): number {
    return this.prepared.shards;
  }

  /** Starts target `name` and joins `connections` clients, connection c to group c % groups (on its shard, for a by-shard target). */
  static async start(name: TargetName, { connections, groups, nodeArgs = [], serverMain }: LoadShape): Promise<LoadedServer> {
    const prepared = prepareTarget(name, connections, nodeArgs, serverMain);
    const server = await startServer(prepared.argv, { readyTimeoutMs: 60_000 }).catch((err: unknown) => {
      prepared.cleanup();
      throw err;
    });
    const loaded = new LoadedServer(name, prepared, server, groups);
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < connections) await loaded.join(next++);
    };
    try {
      await Promise.all(Array.from({ length: JOIN_CONCURRENCY }, worker));
    } catch (err) {
      await loaded.stop();
      throw err;
    }
    return loaded;
  }

  /** Connection c: open, join its group (on its group's shard, for by-shard), resolve on `joined`. */
  private async join(c: number): Promise<void> {
    const group = groupOf(c, this.groups);
    const { shards } = this.prepared;
    const wanted = placementOf(this.name, 'spread') === 'by-shard' && shards > 1 ? group % shards : null;
    for (let attempt = 1; !(await this.open(c, group, wanted)); attempt++) {
      this.reopened++;
      if (attempt >= PLACEMENT_ATTEMPTS) throw new Error(`${this.name}, connection ${c}: never landed on shard ${wanted} in ${attempt} attempts`);
    }
  }

  /** One attempt of join(): true once joined; false (the connection destroyed) when it landed on another shard than `wanted`. */
  private open(c: number, group: number, wanted: number | null): Promise<boolean> {
    return new Promise((resolve, reject) => {
      let misplaced = false;
      const client = connectWs({
        host: '127.0.0.1',
        port: this.server.port,
        path: `${this.prepared.endpoint}?user=u${c}`,
        ...(this.prepared.ca ? { tls: { ca: this.prepared.ca } } : {}),
        onMessage: (payload) => {
          if (misplaced) return;
          const head = payload.toString('latin1', 0, Math.min(payload.length, 16));
          if (head.startsWith('{"op":"msg"')) this.received(payload);
          else if (head.startsWith('{"op":"welcome"')) {
            if (wanted !== null && (JSON.parse(payload.toString()) as { shard?: unknown }).shard !== wanted) {
              misplaced = true;
              client.destroy();
              resolve(false);
            } else client.send(`{"op":"join","group":"g${group}","ref":"j"}`);
          } else if (head.startsWith('{"op":"joined"')) resolve(true);
          else if (head.startsWith('{"op":"err"')) reject(new Error(`${this.name}, connection ${c}: ${payload.toString()}`));
        },
        onError: (err) => {
          if (!misplaced) reject(err);
        },
      });
      this.clients[c] = client;
    });
  }

  /** A `msg` frame: its data carries `t`, when it was published (epoch ms). */
  private received(payload: Buffer): void {
    this.delivered++;
    const text = payload.toString('latin1');
    const at = text.indexOf(T_FIELD);
    if (at >= 0) recordMs(this.latency, performance.timeOrigin + performance.now() - Number.parseFloat(text.slice(at + T_FIELD.length, at + T_FIELD.length + 20)));
  }

  cpuUs(): number {
    let sum = 0;
    for (const us of threadCpuUs(this.server.pid).values()) sum += us;
    return sum;
  }

  /** Per thread: CPU so far, µs, and times it blocked and was woken. */
  threads(): { cpu: Map<number, number>; wakeups: Map<number, number> } {
    return { cpu: threadCpuUs(this.server.pid), wakeups: threadWakeups(this.server.pid) };
  }

  /** SIGSTOP / SIGCONT to the whole server process (--freeze-idle); its connections wait in the kernel. */
  setFrozen(frozen: boolean): void {
    process.kill(this.server.pid, frozen ? 'SIGSTOP' : 'SIGCONT');
  }

  /** SIGSTOP, then waits until every thread has stopped (each one stops when it next runs), so that none runs into the other's window. */
  async freeze(): Promise<void> {
    this.setFrozen(true);
    for (let waited = 0; !allThreadsStopped(this.server.pid); waited++) {
      if (waited >= FREEZE_WAIT_MAX_MS) throw new Error(`${this.name}: not every thread stopped ${FREEZE_WAIT_MAX_MS} ms after SIGSTOP`);
      await sleep(1);
    }
  }

  async stop(): Promise<void> {
    try {
      this.setFrozen(false);
    } catch {
      // Already gone: stop() reports how it ended.
    }
    for (const client of this.clients) client.destroy();
    await this.server.stop();
    this.prepared.cleanup();
  }
}
