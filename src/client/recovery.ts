/**
 * Recovery bookkeeping for groups that keep history (docs/PROTOCOL.md, "History, offsets and
 * recovery"): the last offset and epoch seen per group, what to ask for when re-joining
 * (`since`), and whether a message was already seen. Messages of other groups and direct
 * messages carry no offset; they are de-duplicated by id (seen-ids.ts).
 */

export interface Position {
  offset: number;
  epoch: string;
}

/**
 * What to do with one message: `deliver` it, drop it as a `duplicate`, or deliver it and tell
 * the application that messages before it are missing: offsets were skipped (`gap`), or the
 * group's history was lost and numbering restarted (`epoch`).
 */
export type Verdict = 'deliver' | 'duplicate' | 'gap' | 'epoch';

export interface JoinedPosition {
  /** The group's top offset when the server answered the join. */
  offset?: unknown;
  epoch?: unknown;
  recovered?: unknown;
}

/** What a join's answer meant for the application's copy of the group. */
export type JoinOutcome =
  /** The group keeps no history: nothing to recover. */
  | { history: false }
  /** Every message since the last one seen was replayed before the answer (or this was the first join). */
  | { history: true; recovered: true; position: Position }
  /** The server could not replay (too old, or history was lost: a new epoch); messages may be missing. */
  | { history: true; recovered: false; position: Position };

const isOffset = (value: unknown): value is number => typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;

/** Offsets kept per group for messages a listener threw on; past it, more are not asked for again. */
const MAX_UNHANDED = 1000;

export class RecoveryBook {
  private readonly positions = new Map<string, Position>();
  /**
   * Per group, offsets (of the current epoch) of messages a listener threw on: the next re-join
   * asks from before the lowest, and those come through again while the rest of the replay is
   * dropped as seen. Without it the position had moved past them and they were lost.
   */
  private readonly unhanded = new Map<string, Set<number>>();

  /** The `since` of a join of `group`, when a message of it was seen before: before the first one not handed to the application. */
  since(group: string): Position | undefined {
    const position = this.positions.get(group);
    if (position === undefined) return undefined;
    const missed = this.unhanded.get(group);
    const offset = missed === undefined ? position.offset : Math.max(0, Math.min(position.offset, Math.min(...missed) - 1));
    return { offset, epoch: position.epoch };
  }

  /** A listener threw on the message of `group` at `offset`: it is to come again with the next re-join. */
  failed(group: string, offset: unknown, epoch: unknown): void {
    const position = this.positions.get(group);
    if (!isOffset(offset) || position === undefined || position.epoch !== epoch) return;
    let missed = this.unhanded.get(group);
    if (missed === undefined) this.unhanded.set(group, (missed = new Set()));
    if (missed.size < MAX_UNHANDED) missed.add(offset);
  }

  /** The message of `group` at `offset` reached the application. */
  handed(group: string, offset: unknown): void {
    const missed = this.unhanded.get(group);
    if (missed === undefined || !isOffset(offset)) return;
    missed.delete(offset);
    if (missed.size === 0) this.unhanded.delete(group);
  }

  /** A copy: the application may keep or change it. */
  position(group: string): Position | undefined {
    const position = this.positions.get(group);
    return position === undefined ? undefined : { offset: position.offset, epoch: position.epoch };
  }

  /**
   * Checks a message of `group` with `offset` and `epoch`, and records it when delivered. A
   * message without a valid offset is not this book's business (`deliver`).
   */
  check(group: string, offset: unknown, epoch: unknown): Verdict {
    if (!isOffset(offset) || typeof epoch !== 'string') return 'deliver';
    const position = this.positions.get(group);
    if (position === undefined) {
      this.positions.set(group, { offset, epoch });
      return 'deliver';
    }
    if (position.epoch !== epoch) {
      // History was lost and numbering restarted: what came before the new epoch is gone.
      this.unhanded.delete(group);
      position.epoch = epoch;
      position.offset = offset;
      return 'epoch';
    }
    // Seen before, unless a listener threw on it (then its id, not its offset, tells a duplicate).
    if (offset <= position.offset) return this.unhanded.get(group)?.has(offset) === true ? 'deliver' : 'duplicate';
    const gap = offset > position.offset + 1;
    position.offset = offset;
    return gap ? 'gap' : 'deliver';
  }

  /**
   * Records the answer to a join. `asked` is the `since` the join carried. A fresh join starts
   * at the group's top; a recovered one has seen the replay already (its position moved with
   * each replayed message), and one that could not recover starts again at the top.
   */
  joined(group: string, answer: JoinedPosition, asked: Position | undefined): JoinOutcome {
    if (!isOffset(answer.offset) || typeof answer.epoch !== 'string') return { history: false };
    const top: Position = { offset: answer.offset, epoch: answer.epoch };
    const current = this.positions.get(group);
    const reachedTop = current !== undefined && current.epoch === top.epoch && current.offset >= top.offset;
    // A first join has nothing to recover; a re-join recovered only if the replay reached the top.
    const recovered = asked === undefined || (answer.recovered === true && reachedTop);
    if (!reachedTop) this.positions.set(group, top);
    // Not replayed, and never will be: what a listener threw on is lost (the gap event says so).
    if (!recovered) this.unhanded.delete(group);
    return { history: true, recovered, position: this.positions.get(group)! };
  }

  forget(group: string): void {
    this.positions.delete(group);
    this.unhanded.delete(group);
  }
}
