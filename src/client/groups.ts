/**
 * The groups the application asked to be in, independent of any one connection: each is
 * joined again on every reconnect (with `since` where the group keeps history), and each
 * `join()` promise waits, across reconnects, for the server's answer. A join the server
 * refused only for now (E_OVERLOADED, E_CLUSTER_UNAVAILABLE: nothing was done) is sent again
 * after a pause. A `join()` sent and not answered in time fails with E_TIMEOUT, but the group
 * stays wanted: the server may have joined it (a late answer is told on `joined`), and a client
 * that believed itself out of a group it is in would drop its positions and never re-join it.
 */
import { OcsError } from '../protocol/errors.js';
import type { Position } from './recovery.js';
import { after } from './timers.js';
import type { JoinResult } from './types.js';

interface Waiter {
  resolve(result: JoinResult): void;
  reject(err: OcsError): void;
}

interface Entry {
  presence: boolean;
  /** Answered at least once: later answers are re-joins. */
  joinedOnce: boolean;
  waiters: Waiter[];
  /** Joins refused for now in a row, for the pause before the next one. */
  refusals: number;
  retry: ReturnType<typeof setTimeout> | undefined;
  /** How long a join sent may go unanswered before its waiters fail (E_TIMEOUT), and the timer once one is sent. */
  timeoutMs: number;
  deadline: ReturnType<typeof setTimeout> | undefined;
}

/** The pause before re-sending a refused join: doubling from 250 ms up to 8 s, half of it random. */
export function retryDelay(refusals: number, random: () => number): number {
  const ceiling = Math.min(8000, 250 * 2 ** Math.min(refusals - 1, 5));
  return ceiling / 2 + (ceiling / 2) * random();
}

/** A join frame sent on the current connection, by its ref. */
export interface SentJoin {
  group: string;
  since: Position | undefined;
  /** The wanting it was sent for: a join left and wanted again since is another, whose own join answers it. */
  wanted: object;
}

export class Groups {
  private readonly entries = new Map<string, Entry>();
  private readonly sent = new Map<string, SentJoin>();

  /**
   * Wants `group` (again); the promise settles with the server's answer to the next join of it.
   * As on the wire, the latest join decides whether presence events come (PROTOCOL.md, "Presence").
   */
  want(group: string, presence: boolean, timeoutMs = Infinity): Promise<JoinResult> {
    let entry = this.entries.get(group);
    if (entry === undefined) {
      entry = { presence, joinedOnce: false, waiters: [], refusals: 0, retry: undefined, timeoutMs, deadline: undefined };
      this.entries.set(group, entry);
    } else {
      entry.presence = presence;
      entry.timeoutMs = timeoutMs;
    }
    const waiters = entry.waiters;
    return new Promise<JoinResult>((resolve, reject) => waiters.push({ resolve, reject }));
  }

  /** Stops wanting `group`; a join still unanswered is rejected. */
  /** A join of `group` was refused for good: forgotten, its waiters rejected; whether there were any (a re-join has none). */
  refused(group: string, err: OcsError): boolean {
    const awaited = (this.entries.get(group)?.waiters.length ?? 0) > 0;
    this.drop(group, err);
    return awaited;
  }

  drop(group: string, err: OcsError): boolean {
    const entry = this.entries.get(group);
    if (entry === undefined) return false;
    this.entries.delete(group);
    clearTimeout(entry.retry);
    clearTimeout(entry.deadline);
    for (const waiter of entry.waiters.splice(0)) waiter.reject(err);
    return true;
  }

  /** The join frame for `group` on the current connection, remembered under `ref`. */
  joinFrame(group: string, ref: string, since: Position | undefined): Record<string, unknown> {
    const entry = this.entries.get(group)!;
    this.sent.set(ref, { group, since, wanted: entry });
    this.armDeadline(group, entry);
    const frame: Record<string, unknown> = { op: 'join', group, ref };
    if (entry.presence) frame.presence = true;
    if (since !== undefined) frame.since = since;
    return frame;
  }

  names(): string[] {
    return [...this.entries.keys()];
  }

  has(group: string): boolean {
    return this.entries.has(group);
  }

  /** The join `ref` answered, if it is one of ours and its group is still wanted as it was when it was sent. */
  takeSent(ref: string): SentJoin | undefined {
    const sent = this.sent.get(ref);
    if (sent === undefined) return undefined;
    this.sent.delete(ref);
    return this.entries.get(sent.group) === sent.wanted ? sent : undefined;
  }

  isJoinRef(ref: string): boolean {
    return this.sent.has(ref);
  }

  /** Settles the waiters of `group` with `result`; whether this was a re-join. */
  answered(group: string, result: JoinResult): boolean {
    const entry = this.entries.get(group);
    if (entry === undefined) return false;
    const rejoin = entry.joinedOnce;
    entry.joinedOnce = true;
    entry.refusals = 0;
    clearTimeout(entry.deadline);
    entry.deadline = undefined;
    for (const waiter of entry.waiters.splice(0)) waiter.resolve(result);
    return rejoin;
  }

  /**
   * The join of `group` was refused for now: `send` it again after a pause (unless the group is
   * dropped or the connection closes first: the next connection joins every group anyway).
   */
  retryLater(group: string, random: () => number, send: (group: string) => void): void {
    const entry = this.entries.get(group);
    if (entry === undefined) return;
    clearTimeout(entry.retry);
    entry.refusals++;
    entry.retry = setTimeout(() => {
      entry.retry = undefined;
      if (this.entries.get(group) === entry) send(group);
    }, retryDelay(entry.refusals, random));
  }

  /** The connection closed: its refs will never be answered (the groups are joined again). */
  connectionClosed(): void {
    this.sent.clear();
    for (const entry of this.entries.values()) {
      clearTimeout(entry.retry);
      entry.retry = undefined;
      // Waiting for a connection takes as long as it takes (as a queued request's): the deadline runs again from the next send.
      clearTimeout(entry.deadline);
      entry.deadline = undefined;
    }
  }

  /**
   * From the first join sent for the current waiters (a retry after E_OVERLOADED does not
   * extend it): they fail, the group stays wanted, the join's ref stays answerable.
   */
  private armDeadline(group: string, entry: Entry): void {
    if (entry.deadline !== undefined || entry.waiters.length === 0 || !Number.isFinite(entry.timeoutMs)) return;
    entry.deadline = after(entry.timeoutMs, () => {
      entry.deadline = undefined;
      const err = new OcsError('E_TIMEOUT', `no answer to the join of ${group} in time; it stays wanted until leave()`);
      for (const waiter of entry.waiters.splice(0)) waiter.reject(err);
    });
  }

  /** The client closed: every unanswered join fails. */
  failAll(err: OcsError): void {
    this.sent.clear();
    for (const group of [...this.entries.keys()]) this.drop(group, err);
  }
}
