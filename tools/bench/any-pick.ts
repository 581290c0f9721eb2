/**
 * The time of one `any` pick on one process (src/broker/any-strategies.ts), by strategy and
 * group size, timed over a busy loop on one thread (wall time, not the CPU counters): round_robin is the baseline of each run. Members' windows are looked up in a Map
 * as the broker's are; in `saturated` every other member has no room (the eligible check's
 * worst case short of none at all).
 *
 *   npm run bench:any [-- --sizes 10,2000,20000 --repeat 5 --picks 200000]
 *
 * Prints JSON: per size, case and strategy the median µs per pick over the repetitions with
 * its spread, and its ratio to round_robin's in the same repetition.
 */
import { GroupMembers, type Member } from '../../src/broker/any-strategies.js';
import type { AnyStrategy } from '../../src/protocol/frames.js';
import { spread, type Spread } from './lib/repetitions.js';
import { toolArgs } from '../lib/cli.js';

const { sizes, repeat, picks } = toolArgs({
  command: 'npm run bench:any --',
  about: "The time of one `any` pick by strategy and group size, each against round_robin's in the same repetition. JSON on stdout.",
  options: {
    sizes: { type: 'ints', default: '10,2000,20000', min: 1, help: 'group sizes (members)' },
    repeat: { type: 'int', default: 5, min: 1, help: 'repetitions; the summary gives the median and spread' },
    picks: { type: 'int', default: 200_000, min: 100, help: 'picks per measurement at 10 members (fewer in larger groups, so that each takes about as long)' },
  },
});
const STRATEGIES: AnyStrategy[] = ['round_robin', 'least_connections', 'weighted'];
const CASES = ['all-room', 'saturated'] as const;

function usPerPick(size: number, strategy: AnyStrategy, saturated: boolean): number {
  const members = new GroupMembers<Member>();
  const inflight = new Map<string, number>();
  for (let i = 0; i < size; i++) {
    members.add({ sid: `s${i}`, user: `u${i}`, weight: 1 + (i % 3) });
    inflight.set(`u${i}`, saturated && i % 2 === 1 ? 4 : 0);
  }
  const inflightOf = (user: string): number => inflight.get(user) ?? 0;
  const hasRoom = (member: Member): boolean => inflightOf(member.user) < 4;
  const n = Math.max(100, Math.round((picks * 10) / Math.max(10, size)));
  for (let i = 0; i < Math.min(n, 2000); i++) members.pick(strategy, inflightOf, hasRoom); // warm-up: V8 optimises the pick
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) if (members.pick(strategy, inflightOf, hasRoom) === null) throw new Error('no member picked');
  return Number(process.hrtime.bigint() - t0) / 1000 / n;
}

const results: Array<{ size: number; case: string; strategy: AnyStrategy; usPerPick: Spread; vsRoundRobin: Spread | null }> = [];
for (const size of sizes) {
  for (const kind of CASES) {
    const byStrategy = new Map<AnyStrategy, number[]>(STRATEGIES.map((s) => [s, []]));
    for (let r = 0; r < repeat; r++) for (const strategy of STRATEGIES) byStrategy.get(strategy)!.push(usPerPick(size, strategy, kind === 'saturated'));
    const base = byStrategy.get('round_robin')!;
    for (const strategy of STRATEGIES) {
      const us = byStrategy.get(strategy)!;
      results.push({ size, case: kind, strategy, usPerPick: spread(us)!, vsRoundRobin: strategy === 'round_robin' ? null : spread(us.map((u, i) => u / base[i]!)) });
    }
  }
}
console.log(JSON.stringify({ what: 'µs per any pick on one process (wall time of a busy loop), median over repetitions', config: { sizes, repeat, picks }, results }, null, 2));
