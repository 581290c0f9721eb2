/**
 * The durable side of reliable messaging: one LMDB environment (`store.data_dir`) with
 *   queue  key [target, 3 - pri, seq, id]  -> StoredMessage   waiting or awaiting ack (and scheduled)
 *   dlq    key id                      -> DeadLetter
 *   dlq-age key [failedAt, id]         -> bytes of its data: the dead letters' bound (dead-letter-bound.ts)
 * `target` is `u:USER` or `g:GROUP` (an `any` with no member online). The key order is the
 * delivery order per recipient: priority high to low, then acceptance sequence.
 *
 * LMDB is multi-reader, single-writer with a lock per write transaction, never per open: a
 * pm2 reload's old and new processes can open the same environment at once; which of them
 * delivers the stored messages is decided by a lease record (leases.ts).
 * Writes are asynchronous and batched by lmdb-js per event turn (one transaction, one fsync
 * for everything the broker accepted in that turn); a write's promise resolves when the
 * transaction is committed as `store.sync` defines it.
 *
 * The broker keeps only each message's metadata in memory (MessageMeta, messages.ts: everything
 * but the data, with the data's size); `body` reads the data back (a synchronous read from LMDB's memory map)
 * when the message is delivered.
 *
 * Writes never reject: each resolves true once committed, false when it could not be written
 * (a full disk, an I/O error). A failed write turns the store unwritable (`health`), callers
 * refuse new messages with E_STORE_UNAVAILABLE, and a probe write every PROBE_MS (once the
 * store has room again, disk-room.ts) turns it writable again once space returns. Why values
 * rather than rejections: a rejection nobody awaited (a fire-and-forget remove after an ack)
 * would otherwise end the process.
 *
 * The store does not let LMDB meet a full disk: every write takes its room first (disk-room.ts:
 * blocks reserved past the file's end, else free space above a margin) and is refused without
 * one. lmdb-js 3.5.6's LMDB, when a pwrite fails (ENOSPC), formats its error message into a
 * 100-byte malloc that the message overruns ("Attempting to write page at position ...",
 * mdb.c, mdb_page_flush), and glibc then aborts the process ("corrupted size vs. prev_size").
 */
import { Buffer } from 'node:buffer';
import { accessSync, constants, existsSync, statSync } from 'node:fs';
import { makeDirectory } from '../util/make-dir.js';
import { join, resolve } from 'node:path';
import { open, type Database, type Key, type RootDatabase } from 'lmdb';
import { OcsError } from '../protocol/errors.js';
import { DeadLetterBound, letterBytes, type DeadLetterLimits } from './dead-letter-bound.js';
import { DiskRoom, freeBytes, MIN_FREE_BYTES, type StoreDisk } from './disk-room.js';
import { checkHeader } from './lmdb-header.js';
import { StoreLease, type ProcessIdentity } from './leases.js';
import { metaOf, queueKey, type DeadLetter, type MessageMeta, type QueueKey, type StoredMessage } from './messages.js';

export type SyncMode = 'full' | 'overlapping' | 'none';

const UNBOUNDED: DeadLetterLimits = { letters: Infinity, bytes: Infinity };

/** How often an unwritable store tries a small write to see whether space returned. */
const PROBE_MS = 1000;
/** What a write may cost on disk besides its value: LMDB copies the leaf and branch pages it changes. */
const WRITE_OVERHEAD_BYTES = 3 * 4096;

export interface StoreHealth {
  writable: boolean;
  /** Why the last write failed (null while writable). */
  lastError: string | null;
  failedWrites: number;
}

export class MessageStore {
  readonly health: StoreHealth = { writable: true, lastError: null, failedWrites: 0 };
  /** Called once per change of `health.writable`. */
  onHealthChange: (health: Readonly<StoreHealth>) => void = () => {};
  private probeTimer: NodeJS.Timeout | null = null;
  private closed = false;
  private guardQueued = false;
  /** The dead letters' bound (store.max_dead_letters, store.max_dead_letter_bytes): its `dropped` count and `onDropped` hook. */
  readonly dead: DeadLetterBound;

  private constructor(
    private readonly root: RootDatabase,
    private readonly queue: Database<StoredMessage, QueueKey>,
    private readonly dlq: Database<DeadLetter, string>,
    readonly path: string,
    readonly sync: SyncMode,
    private readonly room: DiskRoom,
    deadLimits: DeadLetterLimits,
  ) {
    room.opened();
    this.dead = DeadLetterBound.open(root, dlq, deadLimits, (write, bytes) => this.settle(write, bytes));
  }

  /**
   * Whether `dataDir` can hold the store (created if need be, readable and writable, and its
   * data.mdb, if any, an LMDB file): its absolute path, or E_STARTUP saying why not. Also
   * `npm start -- --check`'s, so that a reload onto a bad data_dir is refused before pm2 stops
   * the old process (a review's reload exited 0 and the server went down).
   */
  static check(dataDir: string): string {
    const path = resolve(dataDir);
    try {
      makeDirectory(path);
      if (!statSync(path).isDirectory()) throw new Error('not a directory');
      accessSync(path, constants.W_OK | constants.R_OK);
    } catch (err) {
      throw new OcsError('E_STARTUP', `store: cannot open ${path} (store.data_dir): ${describe(err)}`, { cause: err });
    }
    let damage: string | null;
    try {
      damage = checkHeader(join(path, 'data.mdb'));
    } catch (err) {
      throw new OcsError('E_STARTUP', `store: cannot read ${join(path, 'data.mdb')} (store.data_dir): ${describe(err)}`, { cause: err });
    }
    if (damage !== null) throw new OcsError('E_STARTUP', `store: ${path} (store.data_dir) is not a usable LMDB store: ${damage}`);
    return path;
  }

  /**
   * Opens (creating if needed) the environment and proves it can write, so that a bad data
   * directory fails at start-up with E_STARTUP rather than on the first message.
   */
  static async open(dataDir: string, sync: SyncMode, deadLimits: DeadLetterLimits = UNBOUNDED): Promise<MessageStore> {
    const path = MessageStore.check(dataDir);
    // A store LMDB makes (or one it finds empty) is written at once, before DiskRoom is asked:
    // on a full disk lmdb-js then died of SIGBUS, with no line in the log.
    const file = join(path, 'data.mdb');
    const free = freeBytes(path);
    if ((!existsSync(file) || statSync(file).size === 0) && free < MIN_FREE_BYTES) {
      throw new OcsError('E_STARTUP', `store: no room to create the store in ${path} (store.data_dir): ${free} bytes free on its disk, at least ${MIN_FREE_BYTES} needed`);
    }
    let root: RootDatabase;
    const room = new DiskRoom(path);
    try {
      root = open({
        path,
        // queue, dlq, dlq-age, and the history's (src/store/history-store.ts), with room to spare.
        maxDbs: 8,
        // Always a directory holding data.mdb, even when its name has a dot (lmdb-js would take it for a file).
        noSubdir: false,
        overlappingSync: sync === 'overlapping',
        noSync: sync === 'none',
        // Keys hold user ids and group names (<= 128 bytes each): well under LMDB's key limit.
      });
    } catch (err) {
      await room.close();
      throw new OcsError('E_STARTUP', `store: cannot open ${path} (store.data_dir): ${describe(err)}`, { cause: err });
    }
    try {
      const queue = root.openDB<StoredMessage, QueueKey>({ name: 'queue' });
      const dlq = root.openDB<DeadLetter, string>({ name: 'dlq' });
      await root.put('opened', { at: Date.now(), pid: process.pid });
      const store = new MessageStore(root, queue, dlq, path, sync, room, deadLimits);
      store.dead.committed(); // a store over a lowered bound, or written before it, is trimmed now, not at its next letter
      return store;
    } catch (err) {
      await root.close().catch(() => {});
      await room.close();
      throw new OcsError('E_STARTUP', `store: ${path} (store.data_dir) is not a usable LMDB store: ${describe(err)}`, { cause: err });
    }
  }

  /** The lease on this store's queues (leases.ts) for the process run `holder` (`self`: this process, unless a test plays another). */
  lease(holder: string, ttlMs: number, self?: ProcessIdentity): StoreLease {
    return new StoreLease(this.root, holder, ttlMs, self);
  }

  /** Every stored message's metadata, in key order (per target: priority, then sequence). */
  *loadQueue(): Generator<MessageMeta> {
    for (const { value } of this.queue.getRange({})) yield metaOf(value);
  }

  /** The data (JSON text) of a stored message, read from the map; undefined when it is not stored. */
  body(meta: MessageMeta): string | undefined {
    return this.queue.get(queueKey(meta))?.data;
  }

  /** true once committed; false when it could not be written (see `health`). `bytes`: of its data, when the caller has them already. */
  put(message: StoredMessage, bytes = Buffer.byteLength(message.data)): Promise<boolean> {
    return this.settle(() => this.queue.put(queueKey(message), message), bytes);
  }

  /** Persists `meta.attempts` (the rest of the stored message unchanged); true when there is nothing to update. */
  putAttempts(meta: MessageMeta): Promise<boolean> {
    const stored = this.queue.get(queueKey(meta));
    if (stored === undefined || stored.attempts === meta.attempts) return Promise.resolve(true);
    return this.put({ ...stored, attempts: meta.attempts });
  }

  remove(message: MessageMeta): Promise<boolean> {
    return this.settle(() => this.queue.remove(queueKey(message)), 0);
  }

  /**
   * Moves a stored message to the dead-letter queue (one transaction with the caller's other
   * writes this turn), its data read from the queue, its attempt count from `meta`.
   */
  deadLetter(meta: MessageMeta, reason: string): Promise<boolean> {
    const key = queueKey(meta);
    const { bytes: _bytes, ...fields } = meta;
    const data = this.queue.get(key)?.data;
    const letter: DeadLetter = { ...fields, data: data ?? 'null', reason: data === undefined ? `${reason} (its data was no longer in the store)` : reason, failedAt: Date.now() };
    // Both writes or neither: room for the pair is taken at once. Checked one by one, the removal
    // could pass where the letter did not (a disk nearly at the margin), and the retry, once the
    // disk had room, found the data gone and stored a letter of `null`.
    const dataBytes = letterBytes(letter);
    const bytes = dataBytes + 3 * WRITE_OVERHEAD_BYTES; // the letter, its age entry, the removal
    if (!this.room.take(bytes)) return this.noRoom();
    const put = this.issue(() => this.dead.put(letter, dataBytes), bytes);
    void this.issue(() => this.queue.remove(key), 0);
    return this.keptBounded(put);
  }

  /** Stores a dead letter that never made it into the queue (e.g. a processor threw). */
  putDeadLetter(letter: DeadLetter): Promise<boolean> {
    const bytes = letterBytes(letter);
    return this.keptBounded(this.settle(() => this.dead.put(letter, bytes), bytes + WRITE_OVERHEAD_BYTES));
  }

  /** Once a letter is committed, the oldest go while the dead letters are over their bound. */
  private keptBounded(put: Promise<boolean>): Promise<boolean> {
    return put.then((ok) => {
      if (ok) this.dead.committed();
      return ok;
    });
  }

  listDead(limit: number, after?: string): DeadLetter[] {
    const out: DeadLetter[] = [];
    for (const { value } of this.dlq.getRange(after === undefined ? { limit } : { start: after, limit: limit + 1 })) {
      if (value.id === after) continue;
      out.push(value);
      if (out.length >= limit) break;
    }
    return out;
  }

  countDead(): number {
    return this.dlq.getCount();
  }

  getDead(id: string): DeadLetter | undefined {
    return this.dlq.get(id);
  }

  removeDead(id: string): Promise<boolean> {
    const letter = this.dlq.get(id);
    return this.settle(() => (letter === undefined ? this.dlq.remove(id) : this.dead.remove(letter)), 0);
  }

  /** Removes every dead letter; resolves with how many there were, or -1 when the store could not write. */
  async purgeDead(): Promise<number> {
    const count = this.dlq.getCount();
    return (await this.settle(() => this.dead.clear(), 0)) ? count : -1;
  }

  /**
   * Another named database in this environment, for a part that keeps its own data beside the
   * queues (src/store/history-store.ts). Its writes go through guardedWrite().
   */
  openDb<V, K extends Key>(name: string): Database<V, K> {
    return this.root.openDB<V, K>({ name });
  }

  /** A write of about `bytes` to a database from openDb(), guarded as the store's own (room on disk; false, never a rejection). */
  guardedWrite(write: () => Promise<boolean>, bytes: number): Promise<boolean> {
    return this.settle(write, bytes);
  }

  /** data.mdb, the space held past it, and its file system (asked now). */
  disk(): StoreDisk {
    return this.room.usage();
  }

  /** Resolves when everything written so far is on disk (or could not be). */
  flushed(): Promise<void> {
    return Promise.resolve(this.root.flushed).then(
      () => undefined,
      () => undefined,
    );
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.probeTimer) clearTimeout(this.probeTimer);
    this.probeTimer = null;
    await this.root.close();
    await this.room.close();
  }

  /**
   * Runs one lmdb write of a value of about `bytes` and turns its outcome, thrown or rejected,
   * into true/false; false without writing when there is no room on disk for it (and the
   * write's overhead), or when data.mdb is not the file opened: removed or replaced under a
   * running server, LMDB would go on writing to the unlinked file, and everything acknowledged
   * since would be gone at the next start.
   */
  private settle(write: () => Promise<boolean>, bytes: number): Promise<boolean> {
    if (this.closed) return Promise.resolve(false); // as issue() says
    const room = bytes + WRITE_OVERHEAD_BYTES;
    if (!this.room.take(room)) return this.noRoom();
    if (this.room.problem !== null) {
      this.room.settled(room);
      this.failed(new Error(this.room.problem));
      return Promise.resolve(false);
    }
    return this.issue(write, room);
  }

  /** `write`, its `room` taken already: true once committed, false (the health says why) if it fails. */
  private issue(write: () => Promise<boolean>, room: number): Promise<boolean> {
    // lmdb-js takes a write on a closed store, and then throws from a setImmediate: the process would end.
    if (this.closed) {
      this.room.settled(room);
      return Promise.resolve(false);
    }
    let pending: Promise<boolean>;
    try {
      pending = write();
    } catch (err) {
      this.room.settled(room);
      this.failed(err);
      return Promise.resolve(false);
    }
    this.guardTurnCommit();
    return pending.then(
      () => {
        this.room.settled(room);
        return true;
      },
      (err: unknown) => {
        this.room.settled(room);
        this.failed(err);
        return false;
      },
    );
  }

  private noRoom(): Promise<boolean> {
    this.failed(new Error(`ENOSPC: the space the store holds on disk is used up and less than ${MIN_FREE_BYTES / 1024 / 1024} MiB is free on its file system (store.data_dir)`));
    return Promise.resolve(false);
  }

  /**
   * lmdb-js (3.5) opens each event turn's transaction with a write of its own, from a
   * setImmediate queued by the turn's first write, and keeps the promise of that write to
   * itself: when the transaction fails (disk full), that promise rejects with nobody to handle
   * it, and Node's default for an unhandled rejection ends the process. Once per turn, right
   * after that setImmediate, a handler is attached to it through `committed`, which answers
   * with the current transaction's promise.
   */
  private guardTurnCommit(): void {
    if (this.guardQueued) return;
    this.guardQueued = true;
    setImmediate(() => {
      this.guardQueued = false;
      this.root.committed.then(ignore, ignore);
    });
  }

  private failed(err: unknown): void {
    // lmdb also rejects a promise of the underlying cause that nobody else holds.
    const cause = (err as { commitError?: Promise<unknown> } | null)?.commitError;
    const reason = describe(err);
    if (cause instanceof Promise) cause.catch((c: unknown) => (this.health.lastError = `${reason}: ${describe(c)}`));
    this.health.failedWrites++;
    if (!this.health.writable) return;
    this.health.writable = false;
    this.health.lastError = reason;
    this.onHealthChange(this.health);
    this.scheduleProbe();
  }

  /** While unwritable, a small write now and then shows when space has returned. */
  private scheduleProbe(): void {
    if (this.closed || this.probeTimer !== null) return;
    this.probeTimer = setTimeout(() => {
      this.probeTimer = null;
      if (this.closed) return;
      this.settleProbe().then((ok) => {
        if (!ok) return this.scheduleProbe();
        this.health.writable = true;
        this.health.lastError = null;
        this.onHealthChange(this.health);
      }, () => this.scheduleProbe());
    }, PROBE_MS);
    this.probeTimer.unref();
  }

  private settleProbe(): Promise<boolean> {
    if (!this.room.mayRetry()) return Promise.resolve(false);
    try {
      const probe = this.root.put('probe', { at: Date.now() });
      this.guardTurnCommit();
      return probe.then(
        () => true,
        (err: unknown) => {
          (err as { commitError?: Promise<unknown> } | null)?.commitError?.catch(() => {});
          return false;
        },
      );
    } catch {
      return Promise.resolve(false);
    }
  }
}

function ignore(): void {}

function describe(err: unknown): string {
  if (err instanceof Error) return (err as NodeJS.ErrnoException).code ? `${(err as NodeJS.ErrnoException).code}: ${err.message}` : err.message;
  return String(err);
}
