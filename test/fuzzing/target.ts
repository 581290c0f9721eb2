/**
 * The server under fuzz: a real process (`node dist/src/main.js`, two shards), so that a
 * frame or request that ends the process ends only it and is seen as an exit, with a witness
 * on each shard (and, for a node of a cluster, a peer node with witnesses of its own). `checkpoint()` says what went wrong since the last call; `ensureUp()`
 * starts a fresh server when the last one died, so a long run (and fast-check's shrinking)
 * can go on after a crash.
 */
import { getJson, member, onShard, connect, type Frame, type TestClient } from '../helpers/client.js';
import { deepMerge } from '../../tools/lib/server-config.js';
import { startProcess, testConfig, type ServerProcess } from '../helpers/server.js';
import { signToken } from '../helpers/tokens.js';
import { WITNESS_GROUP, witnessUser } from './arbitraries.js';
import { crossShardGaps, Witness } from './witness.js';

export type Variant = 'anonymous' | 'jwt';

export const FUZZ_SECRET = 'fuzz-secret-of-reasonable-length-0123456789';
export const SHARDS = 2;
const WITNESS_PROBE_TIMEOUT_MS = 3000;

export interface TargetOptions {
  variant: Variant;
  /** Start a witness on each shard (default true). */
  witnesses?: boolean;
  /** Extra config, merged over the fuzz defaults. */
  config?: Record<string, unknown>;
  /** With a cluster's config: a second node of the same cluster, with a witness on each of its shards. */
  peer?: boolean;
}

export function fuzzConfig(variant: Variant, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const base = {
    websocket: {
      server: { shards: SHARDS },
      auth: variant === 'jwt' ? { secret: FUZZ_SECRET, allow_anonymous: false } : { allow_anonymous: true },
      // The JWT server also runs with a rate limit, so its refusals are in the input space: a
      // small burst that pipelined fuzz frames exceed, a rate the witnesses (a round and a
      // checkpoint probe every few ms) stay well under.
      limits: variant === 'jwt' ? { messages_per_second: 1000, burst: 20 } : { messages_per_second: 0 },
      // Short, so that unacknowledged deliveries get redelivered and dead-lettered within a run.
      delivery: { ack_timeout: 0.5, max_attempts: 2 },
    },
    // No fsync: durability is not what is fuzzed here, and fsyncs would slow every run.
    store: { sync: 'none' },
  };
  return testConfig(deepMerge(base, extra));
}

/** The config that makes the fuzzed server a node of a cluster on the Redis at `redisUrl` (`prefix`: the cluster's keys). */
export function clusterFuzzConfig(redisUrl: string, prefix = 'fuzz:'): Record<string, unknown> {
  return { cluster: { redis_url: redisUrl, key_prefix: prefix } };
}

/** A server process and how far its logs and stderr were read. */
class Watched {
  private logCursor = 0;
  private stderrCursor = 0;

  constructor(
    readonly proc: ServerProcess,
    private readonly name: string,
  ) {}

  alive(): boolean {
    return this.proc.child.exitCode === null && this.proc.child.signalCode === null;
  }

  /** Its exit, error logs and stderr since the last call. */
  problems(): string[] {
    const problems: string[] = [];
    const { proc } = this;
    if (!this.alive()) {
      const { exitCode, signalCode } = proc.child;
      problems.push(`${this.name} exited (code ${exitCode}, signal ${signalCode}); stderr: ${proc.stderr().slice(this.stderrCursor, this.stderrCursor + 600)}`);
    }
    for (const entry of proc.logs.slice(this.logCursor)) {
      if (typeof entry.level === 'number' && entry.level >= 50) problems.push(`${this.name} logged ${entry.level === 60 ? 'fatal' : 'error'}: ${describeLog(entry)}`);
    }
    this.logCursor = proc.logs.length;
    const stderr = proc.stderr();
    if (stderr.length > this.stderrCursor && this.alive()) problems.push(`${this.name} wrote to stderr: ${stderr.slice(this.stderrCursor, this.stderrCursor + 400)}`);
    this.stderrCursor = stderr.length;
    return problems;
  }
}

export class FuzzTarget {
  /** Servers started so far (more than one after a crash). */
  generation = 0;
  witnesses: Witness[] = [];
  private server!: Watched;
  /** Another node of the same cluster (options.peer), with witnesses of its own: what the fuzz sends reaches it through Redis. */
  private peer: Watched | null = null;
  /** Problems of servers ensureUp() replaced since the last checkpoint. */
  private readonly unreported: string[] = [];

  private constructor(readonly options: TargetOptions) {}

  static async start(options: TargetOptions): Promise<FuzzTarget> {
    const target = new FuzzTarget(options);
    await target.boot();
    return target;
  }

  get port(): number {
    return this.server.proc.port;
  }

  get variant(): Variant {
    return this.options.variant;
  }

  get secret(): string {
    return FUZZ_SECRET;
  }

  get pid(): number | undefined {
    return this.server.proc.child.pid;
  }

  /** The peer node's process id (options.peer), for a test of the harness itself. */
  get peerPid(): number | undefined {
    return this.peer?.proc.child.pid;
  }

  alive(): boolean {
    return this.nodes().every((node) => node.alive());
  }

  /** A connection as `user` that got its welcome (anonymous, or with a token carrying `claims` on the JWT server). */
  async open(user: string, claims: Record<string, unknown> = {}, port = this.port): Promise<TestClient & { welcome: Frame }> {
    if (this.variant === 'anonymous') return member(port, user);
    const client = await connect(port, { query: `token=${await signToken(claims, { sub: user, secret: FUZZ_SECRET })}` });
    return Object.assign(client, { welcome: await client.next((f) => f.op === 'welcome') });
  }

  /** Everything that went wrong since the last checkpoint: exits, error logs, stderr, witnesses. */
  async checkpoint(): Promise<string[]> {
    const problems: string[] = this.unreported.splice(0);
    // First the probes, so that a crash or a wedge this run caused shows in this checkpoint.
    if (this.alive()) {
      const probes = await Promise.all(this.witnesses.map((w) => w.probe(WITNESS_PROBE_TIMEOUT_MS)));
      problems.push(...probes.filter((p): p is string => p !== null));
    }
    for (const node of this.nodes()) problems.push(...node.problems());
    for (const w of this.witnesses) problems.push(...w.takeFailures());
    return problems;
  }

  /** Starts fresh servers if one died or lost a witness. */
  async ensureUp(): Promise<void> {
    if (this.alive() && this.witnesses.every((w) => w.alive)) return;
    // What ended them (an exit after the last checkpoint: a peer's damage comes through Redis,
    // after the run that caused it) goes to the next checkpoint, not away with them.
    for (const node of this.nodes()) this.unreported.push(...node.problems());
    for (const w of this.witnesses) this.unreported.push(...(w.alive ? [] : [`witness on ${w.where} was lost`]), ...w.takeFailures());
    if (this.unreported.length === 0) this.unreported.push(`restarted the servers (generation ${this.generation}) with nothing reported`);
    await this.kill();
    await this.boot();
  }

  /**
   * After the fuzzing: /health says ok with every shard up, a new connection is welcomed by
   * every shard, and the witnesses completed rounds and heard each other across the shards
   * (and the nodes).
   */
  async finalCheck(): Promise<string[]> {
    const problems = await this.checkpoint();
    if (!this.alive()) return problems;
    for (const node of this.nodes()) {
      const { status, body } = await getJson(node.proc.port, '/health');
      const shards = body.shards as { up?: number } | undefined;
      if (status !== 200 || body.status !== 'ok' || shards?.up !== SHARDS) problems.push(`/health answered ${status} ${JSON.stringify(body)}`);
      for (let shard = 0; shard < SHARDS; shard++) {
        try {
          (await onShard(shard, (i) => this.open(`probe-${shard}-${i}`, {}, node.proc.port))).close();
        } catch (err) {
          problems.push(`shard ${shard} does not welcome new connections: ${(err as Error).message}`);
        }
      }
    }
    await Promise.all(this.witnesses.map((w) => w.stop()));
    // Pubs still crossing the rings get a moment to land.
    await Promise.all(this.witnesses.map((w) => w.probe(WITNESS_PROBE_TIMEOUT_MS)));
    await new Promise((resolve) => setTimeout(resolve, 300));
    for (const w of this.witnesses) {
      if (w.rounds === 0) problems.push(`witness on ${w.where} completed no round trip`);
      problems.push(...w.takeFailures());
    }
    problems.push(...crossShardGaps(this.witnesses));
    return problems;
  }

  /** Witness rounds completed, per shard. */
  rounds(): number[] {
    return this.witnesses.map((w) => w.rounds);
  }

  async stop(): Promise<number | null> {
    await Promise.all(this.witnesses.map((w) => w.stop()));
    for (const w of this.witnesses) w.client.close();
    if (this.peer?.alive()) await this.peer.proc.stop('SIGTERM');
    if (!this.server.alive()) return this.server.proc.child.exitCode;
    return this.server.proc.stop('SIGTERM');
  }

  private nodes(): Watched[] {
    return this.peer ? [this.server, this.peer] : [this.server];
  }

  private async boot(): Promise<void> {
    this.generation++;
    this.server = new Watched(await startProcess(fuzzConfig(this.variant, this.options.config)), 'server');
    this.peer = this.options.peer ? new Watched(await startProcess(fuzzConfig(this.variant, this.options.config)), 'peer node') : null;
    this.witnesses = [];
    if (this.options.witnesses === false) return;
    for (const [index, node] of this.nodes().entries()) {
      for (let shard = 0; shard < SHARDS; shard++) {
        const user = witnessUser(index * SHARDS + shard);
        const client = await onShard(shard, () => this.open(user, {}, node.proc.port));
        client.send({ op: 'join', group: WITNESS_GROUP, ref: 'join' });
        await client.next((f) => f.op === 'joined');
        this.witnesses.push(new Witness(client, user, index === 0 ? `shard ${shard}` : `the peer's shard ${shard}`));
      }
    }
    for (const w of this.witnesses) w.start();
  }

  private async kill(): Promise<void> {
    await Promise.all(this.witnesses.map((w) => w.stop()));
    for (const w of this.witnesses) w.client.ws.terminate();
    for (const node of this.nodes()) if (node.alive()) await node.proc.stop('SIGKILL');
  }
}

function describeLog(entry: Record<string, unknown>): string {
  const err = entry.err as { message?: string } | undefined;
  const parts = [String(entry.msg ?? ''), entry.reason ? `reason: ${String(entry.reason)}` : '', err?.message ? `err: ${err.message}` : ''];
  return parts.filter(Boolean).join('; ').slice(0, 300);
}
