/**
 * Who delivers the store's messages: one record, `lease`, in the store's root database, held by
 * one server process at a time. LMDB lets several processes open one store (a pm2 reload runs
 * the old and the new process side by side for a few seconds), but each broker knows only the
 * messages it loaded or accepted; if two loaded the same queue, both would deliver it. The
 * holder loads and delivers everything stored; any other process delivers only what it accepts
 * itself until the holder lets go (src/broker/ownership.ts).
 *
 * The holder is free when it released the lease, when its process is gone, or, where this
 * process cannot see the holder's process (another host, another PID namespace: a container
 * sharing the volume), when it has not renewed the lease for its `ttlMs`. A process is named by
 * boot id, PID namespace, pid and start time (from /proc), so a pid reused after a crash is
 * never taken for the holder, and a holder that is alive but slow (a long GC pause) keeps the
 * lease on this host however late it renews.
 *
 * Every change is one LMDB write transaction, and LMDB serialises those across processes: two
 * processes can never both find the lease free and take it.
 *
 * A process standing by also writes a record of its own, `standby:INSTANCE`, judged the same
 * way: the messages it stored and did not deliver are the holder's to load once it is gone
 * (it released its record at the end of its drain, or its process is gone), say an aborted
 * reload whose new process stopped first. Otherwise they would wait for the holder's restart.
 */
import { readFileSync, readlinkSync } from 'node:fs';
import type { RootDatabase } from 'lmdb';

const LEASE_KEY = 'lease';
const STANDBY_PREFIX = 'standby:';

/** A running process, as another process on the same host can recognise it. */
export interface ProcessIdentity {
  pid: number;
  /** /proc/sys/kernel/random/boot_id: the same host and the same boot; null off Linux. */
  boot: string | null;
  /** /proc/self/ns/pid: pids are comparable only within one namespace. */
  pidNs: string | null;
  /** Field 22 of /proc/PID/stat (clock ticks since boot): tells a reused pid apart. */
  startTime: string | null;
}

export interface LeaseRecord extends ProcessIdentity {
  /** The holder's instance id (unique per server run). */
  holder: string;
  acquiredAt: number;
  renewedAt: number;
  /** How long the lease lasts without renewal where the holder's process cannot be looked up. */
  ttlMs: number;
  released: boolean;
}

/** Whether the lease is free, ours, or held by a live process (and which). */
export type LeaseState = { state: 'free'; previous: LeaseRecord | undefined; why: string } | { state: 'mine'; record: LeaseRecord } | { state: 'held'; record: LeaseRecord };

export class StoreLease {
  constructor(
    private readonly root: RootDatabase,
    /** This process's instance id (src/primary/server.ts). */
    readonly holder: string,
    private readonly ttlMs: number,
    private readonly self: ProcessIdentity = processIdentity(),
    private readonly procRoot = '/proc',
  ) {}

  /** The lease as of now (a read, no write). */
  read(): LeaseState {
    return judge(this.root.get(LEASE_KEY) as LeaseRecord | undefined, this.holder, this.self, Date.now(), this.procRoot);
  }

  /**
   * Takes the lease if it is free, renews it if it is ours; in one write transaction.
   * Resolves with the state found before (`mine` after a renewal, `free` when just taken).
   */
  acquire(): Promise<LeaseState> {
    return this.root.transaction(() => {
      const found = this.read();
      if (found.state === 'held') return found;
      const now = Date.now();
      const acquiredAt = found.state === 'mine' ? found.record.acquiredAt : now;
      const record: LeaseRecord = { ...this.self, holder: this.holder, acquiredAt, renewedAt: now, ttlMs: this.ttlMs, released: false };
      this.root.putSync(LEASE_KEY, record);
      return found;
    });
  }

  /** Writes (or renews) this process's standby record: it stands by and stores messages of its own. */
  standBy(): Promise<void> {
    const key = STANDBY_PREFIX + this.holder;
    return this.root.transaction(() => {
      const now = Date.now();
      const acquiredAt = (this.root.get(key) as LeaseRecord | undefined)?.acquiredAt ?? now;
      this.root.putSync(key, { ...this.self, holder: this.holder, acquiredAt, renewedAt: now, ttlMs: this.ttlMs, released: false } satisfies LeaseRecord);
    });
  }

  /**
   * This process stands by no more. `released`: it stops, everything it wrote is committed, and
   * what it stored is the holder's now; otherwise it took the lease (what it stored is its own)
   * and the record goes.
   */
  leaveStandby(released: boolean): Promise<void> {
    const key = STANDBY_PREFIX + this.holder;
    return this.root.transaction(() => {
      const record = this.root.get(key) as LeaseRecord | undefined;
      if (record === undefined) return;
      if (released) this.root.putSync(key, { ...record, released: true, renewedAt: Date.now() });
      else this.root.removeSync(key);
    });
  }

  /** The other processes' standby records: `gone` when released, exited, or not renewed for their ttl. */
  standbys(): Array<{ key: string; gone: boolean; record: LeaseRecord }> {
    const now = Date.now();
    const found = [];
    for (const { key, value } of this.root.getRange({ start: STANDBY_PREFIX, end: STANDBY_PREFIX + '\uffff' })) {
      const record = value as LeaseRecord;
      const state = judge(record, this.holder, this.self, now, this.procRoot);
      if (state.state !== 'mine') found.push({ key: key as string, gone: state.state === 'free', record });
    }
    return found;
  }

  /** Removes standby records (their messages are loaded). */
  forgetStandbys(keys: readonly string[]): Promise<void> {
    return this.root.transaction(() => {
      for (const key of keys) this.root.removeSync(key);
    });
  }

  /** Lets go of the lease if it is still ours; resolves once the release is committed. */
  release(): Promise<void> {
    return this.root.transaction(() => {
      const found = this.read();
      if (found.state === 'mine') this.root.putSync(LEASE_KEY, { ...found.record, released: true, renewedAt: Date.now() });
    });
  }
}

/**
 * Removes the lease and the standby records from `root`: a copy of the store (backup.ts) is
 * nobody's yet, and its first server loads every stored message as it takes the lease over.
 */
export function forgetLeaseRecords(root: RootDatabase): Promise<void> {
  return root.transaction(() => {
    root.removeSync(LEASE_KEY);
    for (const key of root.getKeys({ start: STANDBY_PREFIX, end: `${STANDBY_PREFIX}\uffff` })) root.removeSync(key);
  });
}

/** The state of `record` for `holder` (this process, `self`) at `now`. */
export function judge(record: LeaseRecord | undefined, holder: string, self: ProcessIdentity, now: number, procRoot = '/proc'): LeaseState {
  if (record === undefined) return { state: 'free', previous: record, why: 'never held' };
  if (typeof record !== 'object' || record === null || typeof record.holder !== 'string' || !Number.isFinite(record.renewedAt) || !Number.isFinite(record.ttlMs)) {
    return { state: 'free', previous: undefined, why: 'not a lease record' };
  }
  if (record.holder === holder) return { state: 'mine', record };
  if (record.released) return { state: 'free', previous: record, why: 'released' };
  const visible = self.boot !== null && self.pidNs !== null && record.startTime !== null;
  if (visible && record.boot !== self.boot) return { state: 'free', previous: record, why: 'its host has rebooted since' };
  if (visible && record.pidNs === self.pidNs) {
    return processAlive(record.pid, record.startTime!, procRoot) ? { state: 'held', record } : { state: 'free', previous: record, why: 'its process has exited' };
  }
  return now - record.renewedAt > record.ttlMs ? { state: 'free', previous: record, why: `not renewed for ${record.ttlMs} ms` } : { state: 'held', record };
}

/** This process (or the one whose /proc is `procRoot`/self). */
export function processIdentity(procRoot = '/proc'): ProcessIdentity {
  return {
    pid: process.pid,
    boot: readOr(() => readFileSync(`${procRoot}/sys/kernel/random/boot_id`, 'utf8').trim()),
    pidNs: readOr(() => readlinkSync(`${procRoot}/self/ns/pid`)),
    startTime: readOr(() => statFields(readFileSync(`${procRoot}/self/stat`, 'utf8'))?.startTime ?? null),
  };
}

/** Whether process `pid`, started at `startTime`, still runs (a zombie does not). */
export function processAlive(pid: number, startTime: string, procRoot = '/proc'): boolean {
  const fields = readOr(() => statFields(readFileSync(`${procRoot}/${pid}/stat`, 'utf8')));
  return fields !== null && fields.startTime === startTime && fields.state !== 'Z' && fields.state !== 'X';
}

/** State (field 3) and start time (field 22) of a /proc/PID/stat line; the command name (field 2) may hold spaces and parentheses. */
function statFields(line: string): { state: string; startTime: string } | null {
  const rest = line.slice(line.lastIndexOf(')') + 2).split(' ');
  const state = rest[0];
  const startTime = rest[19];
  return state && startTime ? { state, startTime } : null;
}

function readOr<T>(read: () => T | null): T | null {
  try {
    return read();
  } catch {
    return null;
  }
}
