// The churn of the soak benchmark: about `live` clients kept connected, each for a few seconds,
// half on ocs.v1.json and half on ocs.v1.msgpack, joining groups whose names rotate, sending
// pub/send/any/presence/history/ping/leave/join and acking what they get, over a pool of users
// that drifts. Everything the clients share is one context (Churn), handed to each client, so
// that a run's state lives in its ChurnClients and not in the module.
import WebSocket from 'ws';
import { inflateLz4 } from '../../../src/codec/lz4.js';
import { MSGPACK_PROTOCOL, readFrame, writeFrame } from '../../../src/protocol/msgpack-codec.js';

export interface ChurnSettings {
  /** host:port of the server. */
  base: string;
  /** Clients connected at a time. */
  live: number;
  /** Seconds a client lives, on average (each one ±50%). */
  lifetime: number;
  /** Operations a second per client. */
  ops: number;
  /** Users in the pool clients connect as. */
  users: number;
  /** Users a second that leave the pool for good (and new ones that enter it). */
  userDrift: number;
  /** Seconds between two generations of group names. */
  groupPeriod: number;
}

/** What the clients did, over the whole run. */
function newCounts() {
  return {
    opened: 0,
    /** Clients closed before their welcome. */
    failedToOpen: 0,
    /** Per close code, the clients the server closed (not the ones that left). */
    closedByServer: new Map<number, number>(),
    framesIn: 0,
    framesOut: 0,
    byOp: new Map<string, number>(),
    errs: new Map<string, number>(),
    /** `joined` frames with `since`: what the user missed was recovered, or not. */
    recovered: 0,
    notRecovered: 0,
    acksSent: 0,
  };
}
export type ChurnCounts = ReturnType<typeof newCounts>;

/** What every client of a run shares. */
interface Churn {
  readonly settings: ChurnSettings;
  readonly counts: ChurnCounts;
  readonly live: Set<Client>;
  /** Per user, the last offset and epoch it saw in each history group (for `join` with `since`). */
  readonly lastSeen: Map<number, Map<string, { offset: number; epoch: string }>>;
  /** performance.now() the generations of group names count from: the start of the churn. */
  origin: number;
  /** The pool of users clients connect as: [userLow, userLow + users); it drifts, and users below it never come back. */
  userLow: number;
  nextRef: number;
}

const GROUPS_PER_GENERATION = 12; // half plain (g.*), half keeping history (h.*, the server's history pattern)

const rand = (n: number): number => Math.floor(Math.random() * n);
const pick = <T>(items: readonly T[]): T => items[rand(items.length)]!;
const bump = (map: Map<string | number, number>, key: string | number): void => void map.set(key, (map.get(key) ?? 0) + 1);

/** The groups of the current generation and of the one before (whose members are still about). */
function groupNames(churn: Churn): string[] {
  const gen = Math.floor((performance.now() - churn.origin) / 1000 / churn.settings.groupPeriod);
  const names: string[] = [];
  for (const g of [gen, gen - 1]) {
    if (g < 0) continue;
    for (let k = 0; k < GROUPS_PER_GENERATION / 2; k++) names.push(`g.${g}.${k}`, `h.${g}.${k}`);
  }
  return names;
}

/** Keeps the clients coming and going: start() at the start of the churn, stop() at its end. */
export class ChurnClients {
  private readonly churn: Churn;
  private churnTimer: NodeJS.Timeout | null = null;
  private driftTimer: NodeJS.Timeout | null = null;

  constructor(settings: ChurnSettings) {
    this.churn = { settings, counts: newCounts(), live: new Set(), lastSeen: new Map(), origin: performance.now(), userLow: 0, nextRef: 0 };
  }

  get counts(): ChurnCounts {
    return this.churn.counts;
  }

  /** Clients connected (or connecting, or closing) right now. */
  get liveCount(): number {
    return this.churn.live.size;
  }

  /** Starts the churn; `origin` (performance.now()) is when it started, for the group generations. */
  start(origin: number): void {
    this.churn.origin = origin;
    this.churnTimer = setInterval(() => this.tick(), 100);
    this.driftTimer = setInterval(() => this.drift(), 1000);
  }

  /** Opens no more clients and ends every live one: `clean` closes, else TCP resets. */
  stop(clean: boolean): void {
    if (this.churnTimer) clearInterval(this.churnTimer);
    if (this.driftTimer) clearInterval(this.driftTimer);
    this.churnTimer = this.driftTimer = null;
    for (const c of [...this.churn.live]) c.end(clean);
  }

  /** The counts as JSON can carry them (maps as objects). */
  summary() {
    const counts = this.churn.counts;
    return {
      opened: counts.opened,
      failedToOpen: counts.failedToOpen,
      closedByServer: Object.fromEntries(counts.closedByServer),
      framesOut: counts.framesOut,
      framesIn: counts.framesIn,
      byOp: Object.fromEntries(counts.byOp),
      errs: Object.fromEntries(counts.errs),
      acksSent: counts.acksSent,
      joinsRecovered: counts.recovered,
      joinsNotRecovered: counts.notRecovered,
    };
  }

  /** Keeps `live` clients up: opens what is missing, at most a lifetime's worth of connections a second times 2. */
  private tick(): void {
    const { live, lifetime } = this.churn.settings;
    const maxPerTick = Math.max(1, Math.ceil(((live / lifetime) * 2) / 10));
    for (let i = 0; i < maxPerTick && this.churn.live.size < live; i++) new Client(this.churn);
  }

  /** Moves the pool of users on, forgetting what the users who left it saw. */
  private drift(): void {
    const from = this.churn.userLow;
    this.churn.userLow += this.churn.settings.userDrift;
    for (let u = Math.floor(from); u < Math.floor(this.churn.userLow); u++) this.churn.lastSeen.delete(u);
  }
}

class Client {
  private readonly ws: WebSocket;
  private readonly binary = Math.random() < 0.5;
  private readonly acks = Math.random() >= 0.1;
  private readonly groups = new Set<string>();
  private readonly userId: number;
  private readonly settings: ChurnSettings;
  private readonly counts: ChurnCounts;
  private opTimer: NodeJS.Timeout | null = null;
  private endTimer: NodeJS.Timeout | null = null;
  private welcomed = false;
  private closed = false;

  constructor(private readonly churn: Churn) {
    this.settings = churn.settings;
    this.counts = churn.counts;
    this.userId = churn.userLow + rand(this.settings.users);
    this.ws = new WebSocket(`ws://${this.settings.base}/ws?user=u${this.userId}`, this.binary ? [MSGPACK_PROTOCOL] : [], { perMessageDeflate: false });
    churn.live.add(this);
    this.ws.on('message', (data: Buffer, isBinary: boolean) => this.onFrame(data, isBinary));
    this.ws.on('error', () => undefined);
    this.ws.on('close', (code: number) => {
      if (!this.welcomed) this.counts.failedToOpen++;
      else if (!this.closed) bump(this.counts.closedByServer, code);
      this.closed = true;
      this.stopTimers();
      churn.live.delete(this);
    });
  }

  /** Leaves: a clean close mostly, a TCP reset sometimes. */
  end(clean = Math.random() < 0.8): void {
    if (this.closed) return;
    this.closed = true;
    this.stopTimers();
    if (clean || this.ws.readyState !== WebSocket.OPEN) this.ws.close(1000);
    else this.ws.terminate();
  }

  private stopTimers(): void {
    if (this.opTimer) clearTimeout(this.opTimer);
    if (this.endTimer) clearTimeout(this.endTimer);
    this.opTimer = this.endTimer = null;
  }

  private send(frame: Record<string, unknown>): void {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    this.counts.framesOut++;
    this.ws.send(this.binary ? Buffer.from(writeFrame(frame)) : JSON.stringify(frame));
  }

  private onFrame(data: Buffer, isBinary: boolean): void {
    this.counts.framesIn++;
    let frame: Record<string, any>;
    if (isBinary) {
      const value = readFrame(data, 1 << 30, inflateLz4);
      if (typeof value === 'string') return void bump(this.counts.errs, `client:bad binary frame ${value}`);
      frame = value;
    } else frame = JSON.parse(data.toString()) as Record<string, any>;
    const op = String(frame.op);
    bump(this.counts.byOp, op);
    switch (op) {
      case 'welcome':
        this.welcomed = true;
        this.counts.opened++;
        this.onWelcome();
        break;
      case 'msg':
        this.onMsgs([frame]);
        break;
      case 'batch':
        this.onMsgs(frame.msgs as Record<string, any>[]);
        break;
      case 'joined':
        if (frame.recovered === true) this.counts.recovered++;
        else if (frame.recovered === false) this.counts.notRecovered++;
        if (typeof frame.offset === 'number') this.saw(frame.group, frame.offset, frame.epoch);
        break;
      case 'history':
        for (const m of (frame.msgs ?? []) as Record<string, any>[]) if (typeof m.offset === 'number') this.saw(m.group ?? frame.group, m.offset, m.epoch);
        break;
      case 'err':
        bump(this.counts.errs, String(frame.code));
        break;
      default:
    }
  }

  private onMsgs(msgs: Record<string, any>[]): void {
    const ids: string[] = [];
    for (const m of msgs) {
      if (typeof m.offset === 'number' && typeof m.group === 'string') this.saw(m.group, m.offset, m.epoch);
      if (m.ackReq === true && this.acks) ids.push(String(m.id));
    }
    if (ids.length === 0) return;
    this.counts.acksSent += ids.length;
    if (ids.length === 1) this.send({ op: 'ack', id: ids[0] });
    else for (let i = 0; i < ids.length; i += 100) this.send({ op: 'ack', ids: ids.slice(i, i + 100) });
  }

  private saw(group: string, offset: number, epoch: string): void {
    if (typeof epoch !== 'string') return;
    let seen = this.churn.lastSeen.get(this.userId);
    if (!seen) this.churn.lastSeen.set(this.userId, (seen = new Map()));
    const prev = seen.get(group);
    if (!prev || prev.epoch !== epoch || prev.offset < offset) seen.set(group, { offset, epoch });
  }

  private onWelcome(): void {
    const lifeMs = this.settings.lifetime * 1000 * (0.5 + Math.random());
    this.endTimer = setTimeout(() => this.end(), lifeMs);
    const n = 1 + rand(3);
    for (let i = 0; i < n; i++) this.join(pick(groupNames(this.churn)));
    this.scheduleOp();
  }

  private join(group: string): void {
    const frame: Record<string, unknown> = { op: 'join', group, ref: `j${this.churn.nextRef++}` };
    if (Math.random() < 0.2) frame.presence = true;
    const since = this.churn.lastSeen.get(this.userId)?.get(group);
    if (since && group.startsWith('h.')) frame.since = since;
    this.groups.add(group);
    this.send(frame);
  }

  private scheduleOp(): void {
    if (this.settings.ops <= 0) return;
    this.opTimer = setTimeout(() => {
      this.op();
      this.scheduleOp();
    }, (1000 / this.settings.ops) * (0.5 + Math.random()));
  }

  private op(): void {
    const groups = [...this.groups];
    const group = groups.length > 0 ? pick(groups) : null;
    const ref = `r${this.churn.nextRef++}`;
    const r = Math.random();
    if (r < 0.3) {
      if (group) this.send({ op: 'pub', group, data: { text: 'x'.repeat(20 + rand(200)), n: this.churn.nextRef }, ref });
    } else if (r < 0.5) {
      // a user of the pool (online or back soon), one who left the pool for good, or one who never connects
      const s = Math.random();
      const to = s < 0.7 ? `u${this.churn.userLow + rand(this.settings.users)}` : s < 0.85 ? `u${Math.max(0, this.churn.userLow - 1 - rand(this.settings.users))}` : `ghost${rand(1e9)}`;
      // a tenth of them scheduled a few seconds ahead (`at`)
      this.send({ op: 'send', to, data: { text: 'y'.repeat(20 + rand(500)) }, pri: rand(4), ref, ...(Math.random() < 0.1 ? { at: Date.now() + rand(5000) } : {}) });
    } else if (r < 0.6) {
      if (group) this.send({ op: 'any', group, data: { job: this.churn.nextRef }, ref });
    } else if (r < 0.7) {
      if (group) this.send({ op: 'presence', group, ref, ...(Math.random() < 0.3 ? { counts: true } : {}) });
    } else if (r < 0.8) {
      const h = groups.filter((g) => g.startsWith('h.'));
      if (h.length > 0) {
        const g = pick(h);
        const seen = this.churn.lastSeen.get(this.userId)?.get(g);
        this.send({ op: 'history', group: g, ref, limit: 20, ...(seen && Math.random() < 0.5 ? { since: Math.max(0, seen.offset - 10) } : {}) });
      }
    } else if (r < 0.9) {
      this.send({ op: 'ping', t: Date.now() });
    } else {
      if (group && Math.random() < 0.5) {
        this.groups.delete(group);
        this.send({ op: 'leave', group, ref });
      } else this.join(pick(groupNames(this.churn)));
    }
  }
}