/**
 * One port, one server. The shards bind with SO_REUSEPORT so that a pm2 reload's two processes
 * can overlap on the port; the same option let a second server with another store (another
 * working directory, so another ./data) start on a taken port without a word, and the kernel
 * then split the clients between two servers that know nothing of each other.
 *
 * So a server claims its address and port in a small file (in the temp directory: per host;
 * only its own user's files are believed) naming what it serves: its store (resolved data_dir), or in cluster mode its cluster (Redis address and key
 * prefix, whose nodes share a port by design). Another live process's claim with another
 * identity stops the start (E_STARTUP); the same identity (a reload, a cluster's instances)
 * shares the port as before. A claim left by a process that died is taken over. Port 0 (a free
 * port picked at start) claims nothing.
 */
import { readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Config } from '../config/schema.js';
import { OcsError } from '../protocol/errors.js';
import { processAlive, processIdentity } from '../store/leases.js';

interface Claim {
  pid: number;
  startTime: string | null;
  identity: string;
}

/** What a server on this port serves: its store, or its cluster (never its Redis password). */
export function portIdentity(config: Config): string {
  const { redis_url, key_prefix } = config.cluster;
  if (redis_url === '') return `store ${resolve(config.store.data_dir)}`;
  const url = new URL(redis_url);
  return `cluster ${url.protocol}//${url.host}${url.pathname} prefix ${JSON.stringify(key_prefix)}`;
}

/** The claim of `host:port` (servers on two specific addresses with one port do not share clients). */
export function claimFile(host: string, port: number, dir = tmpdir()): string {
  return join(dir, `ocs-realtime-port-${host.replace(/[^0-9A-Za-z.-]/g, '_')}-${port}.json`);
}

/** Claims `host:port` for `identity`, or throws E_STARTUP naming the live process that serves another. Returns the release. */
export function claimPort(host: string, port: number, identity: string, dir = tmpdir()): () => void {
  if (port === 0) return () => {};
  const file = claimFile(host, port, dir);
  const held = readClaim(file);
  if (held !== null && held.pid !== process.pid && held.identity !== identity && held.startTime !== null && processAlive(held.pid, held.startTime)) {
    throw new OcsError(
      'E_STARTUP',
      `port ${port} is served by process ${held.pid} (${held.identity}); this server (${identity}) would split its clients with it (SO_REUSEPORT): stop that one, or use another port or the same store`,
    );
  }
  const mine: Claim = { pid: process.pid, startTime: processIdentity().startTime, identity };
  try {
    const temp = `${file}.${process.pid}`;
    writeFileSync(temp, JSON.stringify(mine));
    renameSync(temp, file);
  } catch {
    // A temp directory we cannot write: the port goes unclaimed, as before this check.
    return () => {};
  }
  return () => {
    // Only our own claim: during a reload the new process's may have replaced it.
    const now = readClaim(file);
    if (now?.pid === process.pid) {
      try {
        unlinkSync(file);
      } catch {
        // gone already
      }
    }
  };
}

/** A claim written by this user only: in a shared temp directory anyone could write one naming a live pid to keep a server from starting. */
function readClaim(file: string): Claim | null {
  try {
    if (typeof process.getuid === 'function' && statSync(file).uid !== process.getuid()) return null;
    const value = JSON.parse(readFileSync(file, 'utf8')) as Partial<Claim>;
    return typeof value.pid === 'number' && typeof value.identity === 'string' ? { pid: value.pid, startTime: value.startTime ?? null, identity: value.identity } : null;
  } catch {
    return null;
  }
}
