/**
 * Holds the LMDB store's dead-letter queue to `store.max_dead_letters` and
 * `store.max_dead_letter_bytes`: past either, the letters that failed first are dropped (a
 * queue's drop-head, as a capped dead-letter queue elsewhere does it). Unbounded, a client
 * could grow it for ever: its LOW sends to a recipient whose queue is full each push the
 * oldest LOW message there into the dead letters, and its own quota
 * (`delivery.max_stored_per_sender`) gets that room back (a review grew data.mdb by 5.4 MB a
 * second from ten connections).
 *
 * The order is kept on disk, beside the letters: `dlq-age`, [failedAt, id] -> bytes of data,
 * written in the same transaction as each letter (the letters themselves are keyed by id,
 * which says nothing of age). The letters' count is LMDB's; their bytes are summed once at
 * open and followed from then on by this process (during a reload's overlap the other
 * process's letters are not in its sum: the bound may be passed by them until the next open).
 */
import { Buffer } from 'node:buffer';
import type { Database, RootDatabase } from 'lmdb';
import type { Config } from '../config/schema.js';
import type { Logger } from '../util/logger.js';
import { Tally, WARN_EVERY_MS } from '../util/tally.js';
import type { DeadLetter } from './messages.js';

type AgeKey = [number, string];

export interface DeadLetterLimits {
  letters: number;
  bytes: number;
}

/** A guarded store write (MessageStore.settle): true once committed. */
export type GuardedWrite = (write: () => Promise<boolean>, bytes: number) => Promise<boolean>;

/** The warning of letters dropped to keep the bound (LMDB's and, in a cluster, Redis's), at most once per WARN_EVERY_MS with their count. */
export function dropWarning(log: Logger, store: Pick<Config['store'], 'max_dead_letters' | 'max_dead_letter_bytes'>): (letters: number) => void {
  const { max_dead_letters, max_dead_letter_bytes } = store;
  const drops = new Tally(WARN_EVERY_MS, (letters) => log.warn({ letters, max_dead_letters, max_dead_letter_bytes }, 'dead letters dropped, oldest first, to keep their bound'));
  return (letters) => drops.add(letters);
}

/** Letters one trim step drops before it waits for their removal to commit. */
const TRIM_STEP = 256;

/**
 * An age entry's write is in the same transaction as its letter's, whose promise the caller
 * holds and judges: if the transaction fails, this one's rejection must not go unhandled (that
 * ends the process).
 */
function quietly(write: Promise<boolean>): void {
  write.then(
    () => {},
    () => {},
  );
}

export function letterBytes(letter: Pick<DeadLetter, 'data'>): number {
  return Buffer.byteLength(letter.data);
}

export class DeadLetterBound {
  /** Letters dropped to keep the bound since this process opened the store. */
  dropped = 0;
  /** Told how many letters a trim dropped, once it is done. */
  onDropped: (letters: number) => void = () => {};
  private bytes = 0;
  private trimming = false;

  private constructor(
    private readonly age: Database<number, AgeKey>,
    private readonly dlq: Database<DeadLetter, string>,
    private readonly limits: DeadLetterLimits,
    private readonly write: GuardedWrite,
  ) {}

  /** Opens the age index, rebuilt when it does not list every letter (a store written before it), and sums the letters' bytes. */
  static open(root: RootDatabase, dlq: Database<DeadLetter, string>, limits: DeadLetterLimits, write: GuardedWrite): DeadLetterBound {
    const age = root.openDB<number, AgeKey>({ name: 'dlq-age' });
    if (age.getCount() !== dlq.getCount()) {
      root.transactionSync(() => {
        age.clearSync();
        for (const { value } of dlq.getRange({})) age.putSync([value.failedAt, value.id], letterBytes(value));
      });
    }
    const bound = new DeadLetterBound(age, dlq, limits, write);
    for (const { value } of age.getRange({})) bound.bytes += value;
    return bound;
  }

  /** Letters held now, and their bytes of data. */
  get size(): { letters: number; bytes: number } {
    return { letters: this.dlq.getCount(), bytes: this.bytes };
  }

  /** Writes `letter` with its age entry (one transaction: both are issued in this turn), in place of any letter of its id. */
  put(letter: DeadLetter, bytes: number): Promise<boolean> {
    const earlier = this.dlq.get(letter.id);
    if (earlier !== undefined) {
      quietly(this.age.remove([earlier.failedAt, earlier.id]));
      this.bytes -= letterBytes(earlier);
    }
    quietly(this.age.put([letter.failedAt, letter.id], bytes));
    this.bytes += bytes;
    return this.dlq.put(letter.id, letter);
  }

  /** Removes `letter` with its age entry. */
  remove(letter: DeadLetter): Promise<boolean> {
    quietly(this.age.remove([letter.failedAt, letter.id]));
    this.bytes -= letterBytes(letter);
    return this.dlq.remove(letter.id);
  }

  /** Removes every letter. */
  async clear(): Promise<boolean> {
    await Promise.all([this.age.clearAsync(), this.dlq.clearAsync()]);
    this.bytes = 0;
    return true;
  }

  /** After a letter's write committed: drops the oldest while the queue is over its bound. */
  committed(): void {
    if (!this.trimming && this.over(this.dlq.getCount(), this.bytes)) void this.trim();
  }

  private over(letters: number, bytes: number): boolean {
    return letters > this.limits.letters || bytes > this.limits.bytes;
  }

  private async trim(): Promise<void> {
    this.trimming = true;
    let dropped = 0;
    try {
      // Each step reads committed entries only, so it waits for the previous step's removals.
      for (let letters = this.dlq.getCount(); this.over(letters, this.bytes); letters = this.dlq.getCount()) {
        let last: Promise<boolean> | null = null;
        for (const { key, value } of this.age.getRange({ limit: TRIM_STEP })) {
          if (!this.over(letters, this.bytes)) break;
          last = this.write(() => {
            quietly(this.age.remove(key));
            return this.dlq.remove(key[1]);
          }, 0);
          this.bytes -= value;
          letters--;
          dropped++;
        }
        // Nothing left to drop (the count is another process's), or the store cannot write: stop.
        if (last === null || !(await last)) break;
      }
    } finally {
      this.trimming = false;
      this.dropped += dropped;
      if (dropped > 0) this.onDropped(dropped);
    }
  }
}
