/**
 * Whether what a connection sends on is refused (E_OVERLOADED) while the rings it goes over are
 * backed up: their overflow over performance.ring_overflow_bytes, the consumer behind (the broker
 * in the primary thread, or another shard). Refusing every connection then let a few that flood
 * (acks, joins, sends, pubs) lock out every other one on the shard until the consumer caught up.
 * So each episode of overload gives each connection ALLOWANCE records: one that floods spends
 * them at once and is refused, one that asks little goes on. The connections of one address share
 * ADDRESS_ALLOWANCE too, so a flood spread over many connections from one host, each under its
 * own allowance, is refused as one flooder is. Past twice the bound everyone is refused, so the
 * overflow stays bounded however many connections and addresses ask. An episode ends once the
 * overflow has emptied (the consumer caught up), or is seen down to half the bound (not at the
 * bound itself, or a flood hovering there would earn a new allowance each time it dipped under).
 */
import type { Connection } from './connection.js';

/** Records a connection may still send in one episode of overload. */
export const ALLOWANCE = 16;
/**
 * Records the connections of one address may still send in one episode, together: four
 * connections' worth. Users behind one NAT share it, only while the ring is backed up.
 */
export const ADDRESS_ALLOWANCE = 4 * ALLOWANCE;

export class Backpressure {
  private episode = 0;
  private overloaded = false;
  /** emptied() when the episode began. */
  private emptiedAtStart = 0;
  /** Per connection: the episode it last sent in, and how many records then. */
  private readonly spent = new WeakMap<Connection, { episode: number; records: number }>();
  /** Per address, the records of this episode (emptied when a new one starts: at most one entry per address that sent in it). */
  private readonly spentByAddress = new Map<string, number>();

  constructor(
    /** The overflow's bytes now. */
    private readonly backlog: () => number,
    /** How many times the overflow has emptied. */
    private readonly emptied: () => number,
    /** performance.ring_overflow_bytes. */
    private readonly limit: number,
  ) {}

  /** Whether `conn`'s next `records` (an ack's ids) are refused; counted against its allowance while the overflow is over the bound. */
  refuses(conn: Connection, records = 1): boolean {
    const backlog = this.backlog();
    if (backlog <= this.limit) {
      if (backlog <= this.limit / 2) this.overloaded = false;
      return false;
    }
    if (!this.overloaded || this.emptied() !== this.emptiedAtStart) {
      this.overloaded = true;
      this.emptiedAtStart = this.emptied();
      this.episode++;
      this.spentByAddress.clear();
    }
    if (backlog > 2 * this.limit) return true;
    let mine = this.spent.get(conn);
    if (mine === undefined || mine.episode !== this.episode) this.spent.set(conn, (mine = { episode: this.episode, records: 0 }));
    if ((mine.records += records) > ALLOWANCE) return true;
    const byAddress = (this.spentByAddress.get(conn.address) ?? 0) + records;
    this.spentByAddress.set(conn.address, byAddress);
    return byAddress > ADDRESS_ALLOWANCE;
  }
}
