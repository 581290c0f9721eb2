/**
 * One port, one server. The shards bind with SO_REUSEPORT so that a pm2 reload's two processes
 * can overlap on the port; the same option let a second server with another store (another
 * working directory, so another ./data) start on a taken port without a word, and the kernel
 * then split the clients between two servers that know nothing of each other.
 *
 * So a server claims its port in a small file (in the temp directory: per host; only its own
 * user's files are believed) naming what it serves: its store (resolved data_dir), or in
 * cluster mode its cluster (Redis address and key prefix, whose nodes share a port by design).
 * The claim is per port, whatever address the server binds: 0.0.0.0 and 127.0.0.1, or
 * "localhost" and "127.0.0.1", overlap. Another live process's claim with another identity
 * stops the start (E_STARTUP); the same identity (a reload, a cluster's instances) shares the
 * port as before. A claim left by a process that died is taken over. The file is created
 * exclusively (a link, as O_EXCL), so of two servers starting at once one gets it and the
 * other is refused.
 *
 * A port that some other program listens on (another user's server, one started with another
 * temp directory, anything bound with SO_REUSEPORT) has no claim of ours: a plain bind, which
 * SO_REUSEPORT does not let through, tells. Port 0 (a free port picked at start) is claimed
 * once the shards listen on the port picked.
 *
 * A claim names every process of its identity that serves the port (`others` beside `pid`):
 * when it named one alone, a reload's new process that stopped or died before the old one left
 * the file naming no live process (removed, or naming the dead one), the old one still
 * listening, and every later start and reload was refused as a foreign program's (a review's
 * aborted reloads: 24 of 24 starts after). A process that lets go names the ones left; each
 * puts itself back once a minute if a racing write or a temp cleaner lost it.
 */
import { linkSync, readFileSync, realpathSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import type { Config } from '../config/schema.js';
import { OcsError } from '../protocol/errors.js';
import { processAlive, processIdentity } from '../store/leases.js';

interface Holder {
  pid: number;
  startTime: string | null;
}

interface Claim extends Holder {
  identity: string;
  /** The other processes of the same identity on the port (older versions write none). */
  others: Holder[];
}

/**
 * The claims this process holds, by file, and how many of its servers hold each: an application
 * may run several (the embedding API), and the claim is this process's until the last lets go.
 */
const heldHere = new Map<string, number>();

/** How often a running server puts itself back in its claim if something (a racing write, a temp cleaner) left it out. */
const REFRESH_MS = 60 * 1000;

/** What a server on this port serves: its store, or its cluster (never its Redis password). */
export function portIdentity(config: Config): string {
  const { redis_url, key_prefix } = config.cluster;
  if (redis_url === '') return `store ${realPath(resolve(config.store.data_dir))}`;
  const url = new URL(redis_url);
  return `cluster ${url.protocol}//${url.host}${url.pathname} prefix ${JSON.stringify(key_prefix)}`;
}

/**
 * `path` (absolute) with its symbolic links resolved, so that one store has one identity whatever
 * path names it: the deepest part that exists, resolved, then the rest as given, so that the
 * identity is the same before the store's directory is made (a first start) and after (its reload).
 */
function realPath(path: string): string {
  const rest: string[] = [];
  for (let head = path; ; head = dirname(head)) {
    try {
      return join(realpathSync.native(head), ...rest.reverse());
    } catch {
      if (dirname(head) === head) return path;
      rest.push(basename(head));
    }
  }
}

/** The claim of `port`, on any address. */
export function claimFile(port: number, dir = tmpdir()): string {
  return join(dir, `ocs-realtime-port-${port}.json`);
}

/**
 * Claims `port` (bound on `host`) for `identity`, or throws E_STARTUP naming the live process
 * that serves another, or saying that another program listens there. Returns the release.
 */
export async function claimPort(host: string, port: number, identity: string, dir = tmpdir()): Promise<() => void> {
  if (port === 0) return () => {};
  const file = claimFile(port, dir);
  const me: Holder = { pid: process.pid, startTime: processIdentity().startTime };
  return (await settleClaim(host, port, identity, file, me)) ? keep(file, identity, me) : () => {};
}

/**
 * Claims the port that a server started on port 0 was given (it listens there already, so
 * any other claim of it is stale): a reload onto that port shares it like any other.
 */
export function claimPickedPort(port: number, identity: string, dir = tmpdir()): () => void {
  const file = claimFile(port, dir);
  const me: Holder = { pid: process.pid, startTime: processIdentity().startTime };
  return replace(file, { ...me, identity, others: [] }) === 'ok' ? keep(file, identity, me) : () => {};
}

/**
 * Why a server serving \`identity\` may not start on \`port\`, as a start would find it (without
 * claiming it: \`--check\`, which \`npm run reload\` runs first); null when it may. Port 0: null.
 */
export async function portRefusal(host: string, port: number, identity: string, dir = tmpdir()): Promise<string | null> {
  if (port === 0) return null;
  const file = claimFile(port, dir);
  return refusal(host, port, identity, readClaim(file), file);
}

async function refusal(host: string, port: number, identity: string, held: Claim | null, file: string): Promise<string | null> {
  const live = held === null ? [] : liveHolders(held, file);
  if (held !== null && live.length > 0 && held.identity !== identity) {
    return `port ${port} is served by process ${live[0]!.pid} (${held.identity}); this server (${identity}) would split its clients with it (SO_REUSEPORT): stop that one, or use another port or the same store`;
  }
  if (live.length === 0 && !(await bindable(host, port))) {
    return `port ${port} on ${host} is taken by a process that is not an ocs-realtime server of this user serving ${identity}; it would take some of the clients (SO_REUSEPORT) or all of them: stop it, or use another port (ss -ltnp 'sport = :${port}' names it)`;
  }
  return null;
}

/** The claim's processes still running (another server of this process counts: the embedding API). */
function liveHolders(claim: Claim, file: string): Holder[] {
  return [claim, ...claim.others].filter((h) => (h.pid === process.pid ? heldHere.has(file) : h.startTime !== null && processAlive(h.pid, h.startTime)));
}

/** `claim` with `me` in it (first), and without the processes gone. */
function joined(claim: Claim | null, identity: string, me: Holder, file: string): Claim {
  const others = claim === null || claim.identity !== identity ? [] : liveHolders(claim, file).filter((h) => h.pid !== me.pid);
  return { ...me, identity, others: others.map(({ pid, startTime }) => ({ pid, startTime })) };
}

const holds = (claim: Claim | null, pid: number): boolean => claim !== null && (claim.pid === pid || claim.others.some((h) => h.pid === pid));

/** Whether the claim was written; throws when the port is another's. */
async function settleClaim(host: string, port: number, identity: string, file: string, me: Holder): Promise<boolean> {
  // Twice at most: a claim that appears between the read and the exclusive create is read again.
  for (let attempt = 0; ; attempt++) {
    const held = readClaim(file);
    const why = await refusal(host, port, identity, held, file);
    if (why !== null) throw new OcsError('E_STARTUP', why);
    // A file there that reads as no claim twice over is not a claim (unreadable, or another user's: replace() fails on that one in a sticky temp directory).
    const written = held === null && attempt === 0 ? createExclusive(file, joined(null, identity, me, file)) : replace(file, joined(held, identity, me, file));
    if (written === 'taken') continue;
    // A temp directory we cannot write (or another user's file at this path): the port goes unclaimed.
    return written === 'ok';
  }
}

/** Keeps the claim while the server runs; returns its release. */
function keep(file: string, identity: string, me: Holder): () => void {
  heldHere.set(file, (heldHere.get(file) ?? 0) + 1);
  const refresh = setInterval(() => {
    const held = readClaim(file);
    if (held === null) createExclusive(file, joined(null, identity, me, file));
    else if (held.identity === identity && !holds(held, me.pid)) replace(file, joined(held, identity, me, file));
  }, REFRESH_MS);
  refresh.unref();
  let released = false;
  return () => {
    clearInterval(refresh);
    if (released) return;
    released = true;
    const others = (heldHere.get(file) ?? 1) - 1;
    if (others > 0) return void heldHere.set(file, others);
    heldHere.delete(file);
    // Only our own part of it: the processes left (a reload's other one) keep theirs.
    const held = readClaim(file);
    if (!holds(held, me.pid)) return;
    const [next, ...rest] = liveHolders(held!, file).filter((h) => h.pid !== me.pid);
    if (next !== undefined) return void replace(file, { pid: next.pid, startTime: next.startTime, identity: held!.identity, others: rest });
    try {
      unlinkSync(file);
    } catch {
      // gone already
    }
  };
}

/**
 * Why `host` cannot be listened on here (an address not on this host, a name that does not
 * resolve, a typo), or null: asked of a listen on any free port, before the port itself is, so
 * that `--check` and a start name the key (exit 2) instead of every shard failing its listen
 * (exit 1) and a reload taking the server down after pm2's listen_timeout.
 */
export function hostRefusal(host: string): Promise<string | null> {
  return new Promise((done) => {
    const probe = createServer();
    probe.once('error', (err: NodeJS.ErrnoException) =>
      done(`websocket.server.host ${JSON.stringify(host)} cannot be listened on here (${err.code ?? err.message}): give an address of this host, or 0.0.0.0 (or ::) for all of them`),
    );
    probe.listen({ host, port: 0, exclusive: true }, () => probe.close(() => done(null)));
  });
}

/** Whether a plain listen (no SO_REUSEPORT) on `host:port` succeeds: no one listens there. Other failures (an address not on this host) are for the shards' own listen to report. */
function bindable(host: string, port: number): Promise<boolean> {
  return new Promise((done) => {
    const probe = createServer();
    probe.once('error', (err: NodeJS.ErrnoException) => done(err.code !== 'EADDRINUSE'));
    probe.listen({ host, port, exclusive: true }, () => probe.close(() => done(true)));
  });
}

/** Creates the claim unless one exists, never showing it half written: a link is atomic and refuses an existing name (as O_EXCL does). */
function createExclusive(file: string, claim: Claim): 'ok' | 'taken' | 'failed' {
  const temp = `${file}.${process.pid}`;
  try {
    writeFileSync(temp, JSON.stringify(claim));
    linkSync(temp, file);
    return 'ok';
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EEXIST' ? 'taken' : 'failed';
  } finally {
    try {
      unlinkSync(temp);
    } catch {
      // not written
    }
  }
}

function replace(file: string, claim: Claim): 'ok' | 'failed' {
  const temp = `${file}.${process.pid}`;
  try {
    writeFileSync(temp, JSON.stringify(claim));
    renameSync(temp, file);
    return 'ok';
  } catch {
    return 'failed';
  }
}

/** A claim written by this user only: in a shared temp directory anyone could write one naming a live pid to keep a server from starting. */
function readClaim(file: string): Claim | null {
  try {
    if (typeof process.getuid === 'function' && statSync(file).uid !== process.getuid()) return null;
    const value = JSON.parse(readFileSync(file, 'utf8')) as Partial<Claim>;
    if (typeof value.pid !== 'number' || typeof value.identity !== 'string') return null;
    const others = Array.isArray(value.others) ? value.others.filter((h) => typeof h?.pid === 'number').map((h) => ({ pid: h.pid, startTime: typeof h.startTime === 'string' ? h.startTime : null })) : [];
    return { pid: value.pid, startTime: value.startTime ?? null, identity: value.identity, others };
  } catch {
    return null;
  }
}
