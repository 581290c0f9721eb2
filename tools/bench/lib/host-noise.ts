// How much of a running thread's time the host takes away, per core, measured right before a
// target runs: a process pinned to each core spins reading the clock and adds up every gap
// over GAP_MS (time it was not running). On a virtual machine whose host is busy, that time is
// also charged to whatever process the guest thought was running, so it inflates CPU per
// delivery and latency alike; a run whose cores lost more than NOISY_PCT is flagged, like one
// disturbed by other processes in the guest.
import { spawn } from 'node:child_process';
import { tasksetAvailable } from './pinning.js';

/** A gap in the spinning thread's clock readings longer than this, ms, is time it did not run. */
const GAP_MS = 0.02;
/** Above this share of lost time on a core, the run's figures are the host's as much as ours. */
export const NOISY_PCT = 2;

export interface CoreNoise {
  cpu: string;
  /** Share of the probe's wall time during which its thread did not run, %. */
  lostPct: number;
  /** The longest such gap, ms. */
  maxGapMs: number;
}

const SPIN = `
const { performance } = require('node:perf_hooks');
const start = performance.now(), end = start + Number(process.argv[1]);
let prev = start, lost = 0, max = 0;
for (;;) {
  const now = performance.now(), gap = now - prev;
  prev = now;
  if (gap > ${GAP_MS}) { lost += gap; if (gap > max) max = gap; }
  if (now >= end) break;
}
process.stdout.write(JSON.stringify({ lost, max, elapsed: prev - start }));
`;

/** Spins `ms` on each of `cpus` at once (unpinned, one per CPU, without taskset). */
export async function measureHostNoise(cpus: string[], ms = 1000): Promise<CoreNoise[]> {
  const pinned = tasksetAvailable();
  return Promise.all(cpus.map((cpu) => spinOn(cpu, ms, pinned)));
}

function spinOn(cpu: string, ms: number, pinned: boolean): Promise<CoreNoise> {
  const argv = [process.execPath, '-e', SPIN, String(ms)];
  const child = pinned ? spawn('taskset', ['-c', cpu, ...argv]) : spawn(argv[0]!, argv.slice(1));
  let out = '';
  child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  return new Promise((resolve) => {
    child.on('close', () => {
      try {
        // Over the time it really spun: a gap that ran past the end counts whole, and would make more than 100% of `ms`.
        const { lost, max, elapsed } = JSON.parse(out) as { lost: number; max: number; elapsed: number };
        resolve({ cpu, lostPct: Math.round((lost / elapsed) * 1000) / 10, maxGapMs: Math.round(max * 100) / 100 });
      } catch {
        resolve({ cpu, lostPct: NaN, maxGapMs: NaN });
      }
    });
  });
}

export function isNoisy(noise: CoreNoise[]): boolean {
  return noise.some((n) => n.lostPct > NOISY_PCT);
}
