/**
 * Room on disk for the store's writes, so that LMDB never meets a full disk: lmdb-js 3.5.6's
 * LMDB, when a page write fails (ENOSPC), overruns a 100-byte error buffer and glibc aborts the
 * process, at once or at a later malloc (store.ts).
 *
 * Two sources of room, the first one preferred:
 * - the reserve: blocks allocated past the end of data.mdb (`fallocate --keep-size`: the file's
 *   size and content are untouched). LMDB's page writes there need no space from the file
 *   system, so they cannot fail when another process fills the disk between two checks. It is
 *   kept about RESERVE_SECONDS of the store's writes ahead of the file's end (MIN_RESERVE_BYTES
 *   to MAX_RESERVE_BYTES) and topped up when half of it is promised.
 * - the file system's free space above MIN_FREE_BYTES, asked again before each write the
 *   reserve does not cover (a burst larger than it, or no fallocate): another process can still
 *   take it in the milliseconds before the write commits.
 *
 * The reserve outlives the process: a new run (a restart, a pm2 reload's new process) reads the
 * file's allocated blocks from stat and confirms them with fallocate, which needs no free space
 * for blocks the file has.
 *
 * `fallocate` runs in a small shell spawned once, at open: spawning from the server later, with
 * its heap grown, blocked the thread 13-33 ms (five spawns with 2 million objects on the heap:
 * fork copies the page tables).
 */
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { statfsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';

/** Free space under which the store refuses what its reserve does not cover. */
export const MIN_FREE_BYTES = 1024 * 1024;
/**
 * Room (reserve left, and free space above MIN_FREE_BYTES) an unwritable store must have again
 * before it tries a write, so that a store refused for want of space does not flap.
 */
const RECOVERY_ROOM_BYTES = 1024 * 1024;
/** How often the file system is asked at least, with room left: other processes write too. */
const CHECK_MS = 1000;
const RESERVE_SECONDS = 4;
const MIN_RESERVE_BYTES = 1024 * 1024;
const MAX_RESERVE_BYTES = 64 * 1024 * 1024;
/** Kept out of what writes are promised: the lease and probe writes (leases.ts, store.ts) take no room of their own. */
const HELD_BACK_BYTES = 64 * 1024;
/** stat's block count may include the file system's own blocks for the file (extent trees). */
const HINT_SLACK_BYTES = 64 * 1024;

const RESERVER_SCRIPT = `command -v fallocate >/dev/null 2>&1 || exit 3
while read -r off len; do
  if fallocate --keep-size --offset "$off" --length "$len" -- "$1" 2>/dev/null; then echo ok; else echo no; fi
done`;

/** The store's file and its file system, for /metrics, /stats and the `disk` alert. */
export interface StoreDisk {
  /** data.mdb's size, and the blocks held past it (the reserve, as far as this process knows). */
  fileBytes: number;
  reservedBytes: number;
  /** The file system holding store.data_dir: its size, what it has free for this process, and the share in use (as df shows it). */
  fsBytes: number;
  fsFreeBytes: number;
  fsUsedRatio: number;
}

export class DiskRoom {
  /** Why data.mdb is no longer the file the store opened (at the last check), or null. */
  problem: string | null = null;
  private readonly file: string;
  /** data.mdb's device and inode once LMDB opened it. */
  private fileId: string | null = null;
  private reserver: ChildProcessByStdio<Writable, Readable, null> | null = null;
  /** The end the reserver was asked for (0: none asked), and when it last could not (asked again a check later). */
  private asked = 0;
  private refusedAt = -Infinity;
  private checkedAt = 0;
  /** data.mdb's size at the last check; where it ends once every write promised room is in it (an upper bound). */
  private fileSize = 0;
  private promisedEnd = 0;
  /** Where the blocks known to be allocated end. */
  private reservedEnd = 0;
  /** Free space above MIN_FREE_BYTES at the last check, less what was promised or reserved from it since. */
  private freeLeft = 0;
  /** Bytes promised to writes not yet settled: not in the file's size yet. */
  private inFlight = 0;
  private takenSinceCheck = 0;
  private target = MIN_RESERVE_BYTES;
  /**
   * Where data.mdb's blocks end by stat's count (less a slack for file-system metadata): blocks a
   * previous run (or another process on the store) reserved. A hint: counted only once fallocate
   * has confirmed them. (The end just asked for counts once stat shows that much allocated,
   * without the slack: on a small disk the answer may come after the next write needs it, and
   * statfs no longer shows the space; the few KiB of metadata this may count are within
   * HELD_BACK_BYTES.)
   */
  private allocatedHint = 0;

  /**
   * Before LMDB opens its files: the shell would inherit data.mdb's descriptor (lmdb-js opens
   * it without close-on-exec) and keep the file system busy, e.g. for an unmount.
   */
  constructor(private readonly dir: string) {
    this.file = join(dir, 'data.mdb');
    this.startReserver();
  }

  /** LMDB has opened (or created) data.mdb: the file the store writes to from now on. */
  opened(): void {
    this.fileId = identity(this.file)?.id ?? null;
    this.check(Date.now());
    this.extend(Date.now());
  }

  /** Promises room for a write of `bytes`; false when there is none (the caller refuses the write). */
  take(bytes: number): boolean {
    const now = Date.now();
    if (this.reserveLeft() + this.freeLeft < bytes || now - this.checkedAt >= CHECK_MS) this.check(now);
    if (this.reserveLeft() < bytes) {
      // Free space as statfs saw it up to CHECK_MS ago may be gone (another process filled the
      // disk): ask again before promising any of it. The reserver may have allocated what it was
      // asked (statfs no longer counts it) before its answer is read: the file's blocks tell.
      if (this.asked !== 0 && (identity(this.file)?.allocated ?? 0) >= this.asked) this.reservedEnd = Math.max(this.reservedEnd, this.asked);
      this.freeLeft = Math.min(this.freeLeft, this.freeNow());
    }
    if (this.reserveLeft() < bytes) {
      if (this.freeLeft < bytes) return false;
      this.freeLeft -= bytes;
    }
    this.promisedEnd += bytes;
    this.inFlight += bytes;
    this.takenSinceCheck += bytes;
    if (this.reserveLeft() < this.target / 2) this.extend(now);
    return true;
  }

  /** A write given `bytes` by take() has committed or failed: its pages are in the file's size, or never will be. */
  settled(bytes: number): void {
    this.inFlight = Math.max(0, this.inFlight - bytes);
  }

  /** Whether an unwritable store may try a write again: space came back and the file is still the one opened. */
  mayRetry(): boolean {
    const now = Date.now();
    this.check(now);
    if (this.problem !== null) return false;
    this.extend(now);
    // The reserve counts: statfs does not show what it took from the free space.
    return this.reserveLeft() + Math.max(0, this.freeLeft) >= RECOVERY_ROOM_BYTES;
  }

  /** Asks the file and the file system now. */
  usage(): StoreDisk {
    const fileBytes = identity(this.file)?.size ?? 0;
    const reservedBytes = Math.max(0, this.reservedEnd - fileBytes);
    try {
      const fs = statfsSync(this.dir);
      const used = (fs.blocks - fs.bfree) * fs.bsize;
      const free = fs.bavail * fs.bsize;
      return { fileBytes, reservedBytes, fsBytes: fs.blocks * fs.bsize, fsFreeBytes: free, fsUsedRatio: used + free > 0 ? used / (used + free) : 0 };
    } catch {
      return { fileBytes, reservedBytes, fsBytes: 0, fsFreeBytes: 0, fsUsedRatio: 0 };
    }
  }

  /** Resolves once the reserver's shell has exited (it ends with its stdin). */
  close(): Promise<void> {
    const child = this.reserver;
    this.reserver = null;
    if (child === null || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
    return new Promise((done) => {
      child.once('exit', () => done());
      child.ref(); // else a process with nothing else to do would exit before it
      child.stdin.end();
    });
  }

  private reserveLeft(): number {
    return this.reservedEnd - HELD_BACK_BYTES - this.promisedEnd;
  }

  private check(now: number): void {
    this.target = this.targetAt(now);
    this.takenSinceCheck = 0;
    this.checkedAt = now;
    const file = identity(this.file);
    this.problem = this.problemOf(file);
    this.fileSize = file?.size ?? 0;
    this.allocatedHint = Math.max(0, (file?.allocated ?? 0) - HINT_SLACK_BYTES);
    this.promisedEnd = this.fileSize + this.inFlight;
    this.freeLeft = this.freeNow();
  }

  /** Free space above the margin, less what writes in flight past the allocated blocks will take of it. */
  private freeNow(): number {
    return freeBytes(this.dir) - MIN_FREE_BYTES - Math.max(0, this.promisedEnd - Math.max(this.reservedEnd, this.fileSize));
  }

  /** RESERVE_SECONDS of writes at the rate since the last check. */
  private targetAt(now: number): number {
    const rate = this.takenSinceCheck / Math.max(now - this.checkedAt, 100);
    return Math.floor(clamp(rate * 1000 * RESERVE_SECONDS, MIN_RESERVE_BYTES, MAX_RESERVE_BYTES));
  }

  /** Asks for blocks up to `target` past the promised end, from free space above the margin. */
  private extend(now: number): void {
    if (this.reserver === null || this.asked !== 0 || now - this.refusedAt < CHECK_MS) return;
    this.target = Math.max(this.target, this.targetAt(now));
    const from = this.fileSize;
    const allocatedTo = Math.max(this.reservedEnd, from);
    // Up to what stat says is allocated already (a previous run's reserve) even with no free space.
    const end = Math.min(this.promisedEnd + HELD_BACK_BYTES + this.target, Math.max(allocatedTo + Math.max(0, this.freeLeft), this.allocatedHint));
    if (end <= allocatedTo) return;
    this.asked = end;
    this.reserver.stdin.write(`${from} ${end - from}\n`);
  }

  /** The reserver's answer to the last ask. */
  private reserved(ok: boolean): void {
    const end = this.asked;
    this.asked = 0;
    if (!ok) {
      this.refusedAt = Date.now();
      return;
    }
    const added = end - Math.max(this.reservedEnd, this.fileSize, Math.min(end, this.allocatedHint));
    if (end > this.reservedEnd) this.reservedEnd = end;
    if (added > 0) this.freeLeft -= added;
  }

  private startReserver(): void {
    let child: ChildProcessByStdio<Writable, Readable, null>;
    try {
      child = spawn('/bin/sh', ['-c', RESERVER_SCRIPT, 'ocs-reserve', this.file], { stdio: ['pipe', 'pipe', 'ignore'] });
    } catch {
      return; // no shell: free-space checks only
    }
    this.reserver = child;
    const gone = (): void => {
      if (this.reserver === child) this.reserver = null;
      this.asked = 0;
    };
    child.on('error', gone);
    child.on('exit', gone);
    child.stdin.on('error', gone);
    createInterface({ input: child.stdout }).on('line', (line) => this.reserved(line === 'ok'));
    // Neither the shell nor its pipes keep the server running; it ends with its stdin.
    child.unref();
    (child.stdin as unknown as { unref?: () => void }).unref?.();
    (child.stdout as unknown as { unref?: () => void }).unref?.();
  }

  /** Why `file` (as seen now) is not the data.mdb the store opened, or null. */
  private problemOf(file: { id: string } | null): string | null {
    if (file !== null && file.id === this.fileId) return null;
    return `${this.file} was ${file === null ? 'removed' : 'replaced'} while the server ran: restart it (send and any are refused until then; what they stored since is in the removed file)`;
  }
}

/** The file's device and inode, its size and the bytes allocated to it; null when it does not exist. */
function identity(file: string): { id: string; size: number; allocated: number } | null {
  try {
    const stats = statSync(file);
    return { id: `${stats.dev}:${stats.ino}`, size: stats.size, allocated: stats.blocks * 512 };
  } catch {
    return null;
  }
}

/** Bytes the file system holding `path` has free for this process; Infinity where that cannot be told. */
export function freeBytes(path: string): number {
  try {
    const stats = statfsSync(path);
    return stats.bavail * stats.bsize;
  } catch {
    return Infinity;
  }
}

function clamp(value: number, min: number, max: number): number {
  return Math.min(max, Math.max(min, value));
}
