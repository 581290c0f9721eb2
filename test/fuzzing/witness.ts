/**
 * A well-behaved client on one shard (of the fuzzed server, or of its peer node in a cluster) that keeps doing round trips while the fuzzer runs:
 * `join` of the witnesses' group (again: answered all the same), `pub` to it (its own copy and the sender's ack come back; the witnesses
 * on the other shards get it across the rings), `send` to itself (ack, then the stored
 * message, which it acknowledges once). Every round must complete; any `err` it gets is a
 * failure, and so is losing its connection. It acknowledges only its own messages: what the
 * fuzzer sends it is redelivered and dead-lettered, which costs the witness no frames (and no
 * rate-limit tokens on the JWT server).
 */
import type { Frame, TestClient } from '../helpers/client.js';
import { WITNESS_GROUP } from './arbitraries.js';

const ROUND_TIMEOUT_MS = 5000;
const ROUND_GAP_MS = 15;
/**
 * Least time between two probes. A probe (a send and the ack of its message) follows every run,
 * and runs of a millisecond or two (a replayed shrink, a tiny case) took the witnesses over the
 * JWT server's rate limit (1000 frames a second, burst 20): the witness's own E_RATE_LIMITED
 * was reported as the run's failure. With this gap and a round every 15 ms, a witness sends at
 * most about 670 frames a second.
 */
const PROBE_GAP_MS = 5;

interface Round {
  n: number;
  missing: Set<'joined' | 'pub-ack' | 'pub-msg' | 'send-ack' | 'send-msg'>;
  done: () => void;
}

export class Witness {
  /** Rounds completed. */
  rounds = 0;
  /** Per other witness: the round numbers of its pubs that reached this one. */
  readonly heard = new Map<string, Set<number>>();
  private failures: string[] = [];
  private round: Round | null = null;
  private running = false;
  private loop: Promise<void> = Promise.resolve();
  private probes = new Map<string, () => void>();
  private probeSeq = 0;
  private lastProbeAt = 0;
  /** Ids of its own messages it acknowledged, so that a redelivery crossing its ack is not acknowledged twice. */
  private readonly acked = new Set<string>();

  /** `where`: which shard of which node it is on, for the failures it reports ("shard 0", "the peer's shard 1"). */
  constructor(
    readonly client: TestClient,
    readonly user: string,
    readonly where: string,
  ) {
    client.ws.on('message', () => this.drain());
    void client.closed.then(({ code, reason }) => {
      if (this.running) this.fail(`connection closed (${code} ${reason})`);
      this.running = false;
      for (const wake of this.probes.values()) wake();
    });
  }

  start(): void {
    this.running = true;
    this.loop = (async () => {
      while (this.running) {
        await this.doRound();
        await new Promise((resolve) => setTimeout(resolve, ROUND_GAP_MS));
      }
    })();
  }

  async stop(): Promise<void> {
    this.running = false;
    await this.loop;
  }

  get alive(): boolean {
    return this.client.ws.readyState === this.client.ws.OPEN;
  }

  /** Failures since the last call. */
  takeFailures(): string[] {
    const out = this.failures;
    this.failures = [];
    return out;
  }

  /**
   * A round trip through its shard and the broker (a `send` to itself, answered by the ack
   * once stored): null if answered within `timeoutMs`, else what went wrong. Through the
   * broker, so that what a run did to the primary shows before the next run starts.
   */
  async probe(timeoutMs: number): Promise<string | null> {
    if (!this.alive) return `witness on ${this.where} has no connection`;
    const wait = this.lastProbeAt + PROBE_GAP_MS - Date.now();
    if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
    this.lastProbeAt = Date.now();
    const ref = `c${++this.probeSeq}`;
    const answered = await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => {
        this.probes.delete(ref);
        resolve(false);
      }, timeoutMs);
      this.probes.set(ref, () => {
        clearTimeout(timer);
        this.probes.delete(ref);
        resolve(true);
      });
      this.client.send({ op: 'send', to: this.user, data: { probe: ref }, ref });
    });
    return answered && this.alive ? null : `witness on ${this.where}: no ack of a send within ${timeoutMs} ms (shard or broker wedged or gone?)`;
  }

  private fail(what: string): void {
    this.failures.push(`witness on ${this.where}: ${what}`);
  }

  private async doRound(): Promise<void> {
    const n = this.rounds;
    const finished = new Promise<void>((resolve) => {
      this.round = { n, missing: new Set(['joined', 'pub-ack', 'pub-msg', 'send-ack', 'send-msg']), done: resolve };
    });
    this.client.send({ op: 'join', group: WITNESS_GROUP, ref: `j${n}` });
    this.client.send({ op: 'pub', group: WITNESS_GROUP, data: { witness: this.user, n }, ref: `p${n}` });
    this.client.send({ op: 'send', to: this.user, data: { witness: this.user, n }, ref: `s${n}` });
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), ROUND_TIMEOUT_MS)));
    const late = await Promise.race([finished.then(() => false), timedOut]);
    clearTimeout(timer);
    const round = this.round!;
    this.round = null;
    if (late) {
      if (this.running) this.fail(`round ${n} incomplete after ${ROUND_TIMEOUT_MS} ms: missing ${[...round.missing].join(', ')}`);
      return;
    }
    this.rounds++;
  }

  /** Handles every frame received so far (the test client queues them) and empties the queue. */
  private drain(): void {
    const frames = this.client.frames.splice(0);
    for (const frame of frames) {
      if (frame.op === 'batch') (frame.msgs as Frame[]).forEach((m) => this.onFrame(m));
      else this.onFrame(frame);
    }
    if (this.round && this.round.missing.size === 0) this.round.done();
  }

  private onFrame(f: Frame): void {
    const round = this.round;
    const data = (f.data ?? {}) as { witness?: unknown; n?: unknown };
    switch (f.op) {
      case 'msg':
        if (f.from === this.user && f.ackReq === true) this.ackOnce(f.id as string);
        if (typeof data.witness !== 'string' || typeof data.n !== 'number') return;
        if (data.witness !== this.user) {
          if (f.group === WITNESS_GROUP && f.from === data.witness) this.heardFrom(data.witness, data.n);
          return;
        }
        if (f.from !== this.user || round?.n !== data.n) return;
        if (f.group === WITNESS_GROUP && f.ackReq !== true) round.missing.delete('pub-msg');
        if (f.group === undefined && f.ackReq === true) round.missing.delete('send-msg');
        return;
      case 'joined':
        if (round && f.ref === `j${round.n}`) round.missing.delete('joined');
        return;
      case 'ack':
        if (typeof f.ref === 'string') this.probes.get(f.ref)?.();
        if (round && f.ref === `p${round.n}`) round.missing.delete('pub-ack');
        if (round && f.ref === `s${round.n}`) round.missing.delete('send-ack');
        return;
      case 'err':
        this.fail(`got err ${String(f.code)}: ${String(f.message)}`);
        return;
    }
  }

  /** Acknowledges one of its own messages (rounds, probes, redeliveries of either) once. */
  private ackOnce(id: string): void {
    if (this.acked.has(id)) return;
    this.acked.add(id);
    if (this.acked.size > 10_000) this.acked.delete(this.acked.values().next().value!);
    this.client.send({ op: 'ack', id });
  }

  private heardFrom(user: string, n: number): void {
    let set = this.heard.get(user);
    if (!set) this.heard.set(user, (set = new Set()));
    set.add(n);
  }
}

/** What the witnesses missed of each other's pubs (pubs cross the shard rings, and Redis to a peer node). */
export function crossShardGaps(witnesses: readonly Witness[]): string[] {
  const gaps: string[] = [];
  for (const from of witnesses) {
    for (const to of witnesses) {
      if (from === to) continue;
      const heard = to.heard.get(from.user) ?? new Set<number>();
      const missing = Array.from({ length: from.rounds }, (_, n) => n).filter((n) => !heard.has(n));
      if (missing.length > 0) gaps.push(`witness on ${to.where} missed ${missing.length} of ${from.rounds} pubs of the witness on ${from.where} (first: round ${missing[0]})`);
    }
  }
  return gaps;
}
