/**
 * What a Lua script did in Redis, command by command (Redis's MONITOR lists the commands a
 * script runs, with their keys): a deterministic measure of a script's work, where its time is
 * not one. For the cluster tests, on a private Redis only.
 */
import { connect } from 'node:net';
import { Redis } from 'ioredis';

/**
 * Calls `seen` with each command Redis runs (MONITOR), as [name, ...args] with the name as
 * sent, and the address of the client that sent it ("lua" inside a script), until the
 * returned function is called. On a socket of its own, not ioredis's monitor():
 * that can throw from its socket handler when a busy Redis's feed follows the OK in one read
 * ("Command queue state error"), failing a test run.
 */
export async function watchCommands(url: string, seen: (args: string[], client: string) => void): Promise<() => void> {
  const { hostname, port } = new URL(url);
  const socket = connect(Number(port), hostname);
  socket.setEncoding('latin1');
  let rest = '';
  let started: () => void;
  const ok = new Promise<void>((resolve, reject) => {
    started = resolve;
    socket.once('error', reject);
  });
  socket.on('data', (chunk: string) => {
    const lines = (rest + chunk).split('\r\n');
    rest = lines.pop()!;
    for (const line of lines) {
      if (line === '+OK') started();
      else if (line.startsWith('+')) seen(Array.from(line.matchAll(/"((?:[^"\\]|\\.)*)"/g), (m) => unescapeMonitor(m[1]!)), /\[\d+ ([^\]]+)\]/.exec(line)?.[1] ?? '');
    }
  });
  socket.on('error', () => undefined);
  socket.write('MONITOR\r\n');
  await ok;
  return () => socket.destroy();
}

/** An argument as MONITOR quotes it (sdscatrepr escapes newlines, quotes, other bytes as \xHH), back to its text (UTF-8). */
function unescapeMonitor(quoted: string): string {
  const named: Record<string, string> = { n: '\n', r: '\r', t: '\t', a: '\x07', b: '\b', '"': '"', '\\': '\\' };
  const latin1 = quoted.replace(/\\(x[0-9a-fA-F]{2}|.)/g, (_, e: string) => (e.length === 3 ? String.fromCharCode(parseInt(e.slice(1), 16)) : (named[e] ?? e)));
  return Buffer.from(latin1, 'latin1').toString('utf8');
}

/** The commands `work` made Redis run (those of its scripts included), each as [NAME, ...args]. */
export async function commandsDuring(url: string, work: () => Promise<unknown>): Promise<string[][]> {
  const seen: string[][] = [];
  const marker = `end-${process.hrtime.bigint()}`;
  let ended!: () => void;
  const end = new Promise<void>((resolve) => (ended = resolve));
  const unwatch = await watchCommands(url, (args) => {
    if (args[0]?.toUpperCase() === 'ECHO' && args[1] === marker) ended();
    else seen.push([args[0]!.toUpperCase(), ...args.slice(1)]);
  });
  const client = new Redis(url);
  try {
    await work();
    await client.call('ECHO', marker);
    await end;
  } finally {
    client.disconnect();
    unwatch();
  }
  return seen;
}

/** The commands among `commands` that read a hash's members (all of them, or a scan of them), on keys starting with `prefix`. */
export function memberReads(commands: string[][], prefix: string): string[][] {
  return commands.filter(([name, key]) => ['HGETALL', 'HKEYS', 'HVALS', 'HSCAN'].includes(name!) && key!.startsWith(prefix));
}
