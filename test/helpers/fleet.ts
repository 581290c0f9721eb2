/**
 * Many token-authenticated clients against one port, as real ones behave around a restart: each
 * reconnects as soon as its connection closes, joins its group again, acknowledges every stored
 * message it gets, and some of them keep sending acknowledged `send`s and `pub`s. Every stored
 * delivery is counted per recipient and id, so that a test can tell lost from duplicated; a
 * prober opens one new connection after another, so that the longest time no new connection
 * was accepted shows.
 */
import WebSocket from 'ws';
import { signToken } from './tokens.js';

type Frame = Record<string, unknown> & { op: string };

export interface FleetOptions {
  port: number;
  secret: string;
  users: number;
  groups: number;
}

export class Fleet {
  readonly clients: FleetClient[] = [];
  /** `user id` → how many times that stored message reached that user. */
  readonly deliveries = new Map<string, number>();
  /** Sends the server acknowledged: message id → recipient. */
  readonly ackedSends = new Map<string, string>();
  readonly counts = { sends: 0, sendErrors: 0, pubs: 0, pubsAcked: 0, pubsReceived: 0, failedAttempts: 0 };
  private readonly pendingSends = new Map<string, string>();
  private traffic: NodeJS.Timeout | null = null;
  private seq = 0;
  stopping = false;

  constructor(readonly options: FleetOptions) {}

  async connectAll(batch = 50): Promise<void> {
    for (let i = 0; i < this.options.users; i++) this.clients.push(new FleetClient(this, `u${i}`, `g${i % this.options.groups}`, await this.token(`u${i}`)));
    for (let i = 0; i < this.clients.length; i += batch) await Promise.all(this.clients.slice(i, i + batch).map((client) => client.open()));
  }

  token(user: string): Promise<string> {
    return signToken({}, { sub: user, secret: this.options.secret, exp: '1h' });
  }

  /** Every `tickMs`, `sendsPerTick` sends to random users and `pubsPerTick` pubs, from random open clients. */
  startTraffic(tickMs: number, sendsPerTick: number, pubsPerTick: number): void {
    this.traffic = setInterval(() => {
      for (let i = 0; i < sendsPerTick; i++) {
        const to = `u${Math.floor(Math.random() * this.options.users)}`;
        const ref = `s${this.seq++}`;
        if (this.randomOpen()?.send({ op: 'send', to, data: { ref }, ref })) {
          this.pendingSends.set(ref, to);
          this.counts.sends++;
        }
      }
      for (let i = 0; i < pubsPerTick; i++) {
        const client = this.randomOpen();
        if (client?.send({ op: 'pub', group: client.group, data: { t: Date.now() }, ref: `p${this.seq++}` })) this.counts.pubs++;
      }
    }, tickMs);
  }

  stopTraffic(): void {
    if (this.traffic) clearInterval(this.traffic);
    this.traffic = null;
  }

  /** Acknowledged sends whose recipient has not received them (yet). */
  missing(): string[] {
    return [...this.ackedSends].filter(([id, to]) => !this.deliveries.has(`${to} ${id}`)).map(([id]) => id);
  }

  duplicates(): number {
    let extra = 0;
    for (const count of this.deliveries.values()) extra += count - 1;
    return extra;
  }

  close(): void {
    this.stopping = true;
    this.stopTraffic();
    for (const client of this.clients) client.ws?.terminate();
  }

  /** A frame for one of the fleet's clients. */
  onFrame(client: FleetClient, frame: Frame): void {
    if (frame.op === 'msg' || frame.op === 'batch') {
      for (const m of frame.op === 'batch' ? (frame.msgs as Frame[]) : [frame]) {
        if (m.ackReq !== true) {
          this.counts.pubsReceived++;
          continue;
        }
        const key = `${client.user} ${String(m.id)}`;
        this.deliveries.set(key, (this.deliveries.get(key) ?? 0) + 1);
        client.ack(String(m.id));
      }
    } else if (frame.op === 'ack' && typeof frame.ref === 'string') {
      const to = this.pendingSends.get(frame.ref);
      if (to !== undefined) {
        this.pendingSends.delete(frame.ref);
        this.ackedSends.set(String(frame.id), to);
      } else if (frame.ref.startsWith('p')) {
        this.counts.pubsAcked++;
      }
    } else if (frame.op === 'err' && typeof frame.ref === 'string' && this.pendingSends.delete(frame.ref)) {
      this.counts.sendErrors++;
    }
  }

  private randomOpen(): FleetClient | undefined {
    for (let tries = 0; tries < 10; tries++) {
      const client = this.clients[Math.floor(Math.random() * this.clients.length)];
      if (client?.ready) return client;
    }
    return undefined;
  }
}

export class FleetClient {
  ws: WebSocket | null = null;
  ready = false;
  /** Sessions after the first (each a `welcome` on a new connection). */
  reconnects = 0;
  readonly closeCodes: number[] = [];
  private sessions = 0;

  constructor(
    private readonly fleet: Fleet,
    readonly user: string,
    readonly group: string,
    private readonly token: string,
  ) {}

  /** Connects, waits for `welcome`, joins the group; retries until it is in (each failure counted). */
  async open(): Promise<void> {
    for (;;) {
      if (this.fleet.stopping) return;
      try {
        await this.attempt();
        return;
      } catch {
        this.fleet.counts.failedAttempts++;
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    }
  }

  send(frame: Frame): boolean {
    if (!this.ready || this.ws?.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  /** Acknowledges at once, on the connection that is open now (a backlog arrives before the group is joined). */
  ack(id: string): void {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify({ op: 'ack', id }));
  }

  private attempt(): Promise<void> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(`ws://127.0.0.1:${this.fleet.options.port}/ws?token=${this.token}`);
      this.ws = ws;
      let welcomed = false;
      ws.on('message', (raw: Buffer) => {
        const frame = JSON.parse(raw.toString()) as Frame;
        if (frame.op === 'welcome') {
          welcomed = true;
          if (this.sessions++ > 0) this.reconnects++;
          ws.send(JSON.stringify({ op: 'join', group: this.group, ref: 'join' }));
        } else if (frame.op === 'joined') {
          this.ready = true;
          resolve();
        }
        this.fleet.onFrame(this, frame);
      });
      ws.once('error', (err) => {
        if (!welcomed) reject(err);
      });
      ws.once('close', (code) => {
        if (!welcomed) return reject(new Error(`closed ${code} before welcome`));
        this.ready = false;
        this.closeCodes.push(code);
        if (!this.fleet.stopping) void this.open();
      });
    });
  }
}

/** Opens one new connection after another until stopped; `accepted` holds when each was welcomed. */
export class Prober {
  readonly accepted: number[] = [];
  failures = 0;
  private running = true;
  private readonly done: Promise<void>;

  constructor(port: number, token: string) {
    this.done = this.loop(port, token);
  }

  /** The longest time between two accepted connections within [from, to], and when it began. */
  longestGap(from: number, to: number): { gapMs: number; startedAt: number } {
    const times = [from, ...this.accepted.filter((t) => t > from && t < to), to];
    let longest = { gapMs: 0, startedAt: from };
    for (let i = 1; i < times.length; i++) if (times[i]! - times[i - 1]! > longest.gapMs) longest = { gapMs: times[i]! - times[i - 1]!, startedAt: times[i - 1]! };
    return longest;
  }

  stop(): Promise<void> {
    this.running = false;
    return this.done;
  }

  private async loop(port: number, token: string): Promise<void> {
    while (this.running) {
      const ok = await new Promise<boolean>((resolve) => {
        const ws = new WebSocket(`ws://127.0.0.1:${port}/ws?token=${token}`);
        const timer = setTimeout(() => (ws.terminate(), resolve(false)), 2000);
        ws.on('message', (raw: Buffer) => {
          if ((JSON.parse(raw.toString()) as Frame).op !== 'welcome') return;
          clearTimeout(timer);
          ws.close();
          resolve(true);
        });
        ws.once('error', () => (clearTimeout(timer), resolve(false)));
      });
      if (ok) this.accepted.push(Date.now());
      else this.failures++;
      await new Promise((resolve) => setTimeout(resolve, 5));
    }
  }
}
