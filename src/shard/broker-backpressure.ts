/**
 * Whether what a connection asks of the broker is refused (E_OVERLOADED) while this shard's ring
 * to the broker is backed up: its overflow over performance.ring_overflow_bytes, the broker (the
 * primary thread) behind. Refusing every connection then let a few that flood (acks, joins,
 * sends) lock out every other one on the shard until the broker caught up. So each episode of
 * overload gives each connection ALLOWANCE records: one that floods spends them at once and is
 * refused, one that asks little goes on. Past twice the bound everyone is refused, so the
 * overflow stays bounded however many connections ask. An episode ends once the overflow has
 * emptied (the broker caught up), or is seen down to half the bound (not at the bound itself,
 * or a flood hovering there would earn a new allowance each time it dipped under).
 */
import type { Connection } from './connection.js';

/** Records a connection may still send the broker in one episode of overload. */
export const ALLOWANCE = 16;

export class BrokerBackpressure {
  private episode = 0;
  private overloaded = false;
  /** The link's backlogEmptied when the episode began. */
  private emptiedAtStart = 0;

  constructor(
    private readonly link: { readonly backlog: number; readonly backlogEmptied: number },
    /** performance.ring_overflow_bytes. */
    private readonly limit: number,
  ) {}

  /** Whether `conn`'s next record to the broker is refused; counted against its allowance when the broker is behind. */
  refuses(conn: Connection): boolean {
    const backlog = this.link.backlog;
    if (backlog <= this.limit) {
      if (backlog <= this.limit / 2) this.overloaded = false;
      return false;
    }
    if (!this.overloaded || this.link.backlogEmptied !== this.emptiedAtStart) {
      this.overloaded = true;
      this.emptiedAtStart = this.link.backlogEmptied;
      this.episode++;
    }
    if (backlog > 2 * this.limit) return true;
    if (conn.overloadEpisode !== this.episode) {
      conn.overloadEpisode = this.episode;
      conn.overloadSpent = 0;
    }
    return ++conn.overloadSpent > ALLOWANCE;
  }
}
