/**
 * What a Lua script did in Redis, command by command (Redis's MONITOR lists the commands a
 * script runs, with their keys): a deterministic measure of a script's work, where its time is
 * not one. For the cluster tests, on a private Redis only.
 */
import { Redis } from 'ioredis';

/** The commands `work` made Redis run (those of its scripts included), each as [NAME, ...args]. */
export async function commandsDuring(url: string, work: () => Promise<unknown>): Promise<string[][]> {
  const watcher = new Redis(url);
  const monitor = await watcher.monitor();
  const seen: string[][] = [];
  const marker = `end-${process.hrtime.bigint()}`;
  const ended = new Promise<void>((resolve) => {
    monitor.on('monitor', (_time: string, args: string[]) => {
      if (args[0]?.toUpperCase() === 'ECHO' && args[1] === marker) resolve();
      else seen.push([args[0]!.toUpperCase(), ...args.slice(1)]);
    });
  });
  const client = new Redis(url);
  try {
    await work();
    await client.call('ECHO', marker);
    await ended;
  } finally {
    client.disconnect();
    monitor.disconnect();
    watcher.disconnect();
  }
  return seen;
}

/** The commands among `commands` that read a hash's members (all of them, or a scan of them), on keys starting with `prefix`. */
export function memberReads(commands: string[][], prefix: string): string[][] {
  return commands.filter(([name, key]) => ['HGETALL', 'HKEYS', 'HVALS', 'HSCAN'].includes(name!) && key!.startsWith(prefix));
}
