/**
 * The encoding of GET /stats/histograms (src/metrics/hdr.ts encodeHistogram) against
 * hdr-histogram-js's own encodeIntoCompressedBase64, at the rhythm the primary renders it: five
 * busy since-start histograms, encoded once per interval, so the code stays as cold as it is in
 * the server (a tight loop would have V8 optimise both, and hide what the primary pays).
 *
 *   npm run bench:hdr [-- --rounds 12 --repeat 3 --interval-ms 1000 --samples 200000]
 *
 * Prints JSON: per repetition, the median ms per render of the five (the first two rounds, which
 * load and compile, left out) and the bytes of base64; then the median and spread over the
 * repetitions. Both encoders take turns within each round, on the same histograms.
 */
import * as hdr from 'hdr-histogram-js';
import { clampUs, encodeHistogram, newHistogram, type Histogram } from '../../src/metrics/hdr.js';
import { toolArgs } from '../lib/cli.js';

const {
  rounds,
  repeat,
  'interval-ms': intervalMs,
  samples,
} = toolArgs({
  command: 'npm run bench:hdr --',
  about: "GET /stats/histograms' encoding against hdr-histogram-js's encodeIntoCompressedBase64, at the rhythm the primary renders it. JSON on stdout.",
  options: {
    rounds: { type: 'int', default: 12, min: 3, help: 'renders per repetition (the first two, which load and compile, are not measured)' },
    repeat: { type: 'int', default: 3, min: 1, help: 'repetitions; the summary gives the median and spread' },
    'interval-ms': { type: 'number', default: 1000, help: 'time between renders, as the metrics interval' },
    samples: { type: 'int', default: 200_000, min: 1, help: 'samples in each histogram' },
  },
});
/** Rounds that load and compile the code: not measured. */
const COLD_ROUNDS = 2;
const HISTOGRAMS = 5;

/** Latencies around 0.5 ms, spread over two decades, with a tail of one in a thousand up to 50 ms: a busy server's pub latency. */
function busyHistogram(): Histogram {
  const h = newHistogram();
  for (let i = 0; i < samples; i++) {
    const body = Math.exp(Math.log(500) + 1.6 * (Math.random() * 2 - 1));
    h.recordValue(clampUs(body + (Math.random() < 0.001 ? 50_000 * Math.random() : 0)));
  }
  return h;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

const round3 = (n: number): number => Math.round(n * 1000) / 1000;

interface Repetition {
  oursMs: number;
  packageMs: number;
  oursBytes: number;
  packageBytes: number;
}

async function repetition(): Promise<Repetition> {
  const histograms = Array.from({ length: HISTOGRAMS }, busyHistogram);
  const times = { ours: [] as number[], package: [] as number[] };
  const bytes = { ours: 0, package: 0 };
  const encoders = { ours: encodeHistogram, package: (h: Histogram) => hdr.encodeIntoCompressedBase64(h) };
  for (let round = 0; round < rounds; round++) {
    // Alternate which goes first: neither always finds the caches warm.
    const order = round % 2 === 0 ? (['ours', 'package'] as const) : (['package', 'ours'] as const);
    for (const name of order) {
      const t0 = performance.now();
      let length = 0;
      for (const h of histograms) length += encoders[name](h).length;
      if (round >= COLD_ROUNDS) times[name].push(performance.now() - t0);
      bytes[name] = length;
    }
    // New samples each interval, as in the server: the next encoding is not of the same counts.
    for (const h of histograms) h.recordValue(clampUs(300 + 400 * Math.random()));
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
  return { oursMs: round3(median(times.ours)), packageMs: round3(median(times.package)), oursBytes: bytes.ours, packageBytes: bytes.package };
}

const runs: Repetition[] = [];
for (let i = 0; i < repeat; i++) runs.push(await repetition());
const spread = (pick: (r: Repetition) => number) => {
  const all = runs.map(pick);
  return { median: round3(median(all)), min: round3(Math.min(...all)), max: round3(Math.max(...all)) };
};
console.log(
  JSON.stringify(
    {
      what: `ms per render of ${HISTOGRAMS} histograms of ${samples} samples, once every ${intervalMs} ms, median of rounds ${COLD_ROUNDS + 1}-${rounds}`,
      runs,
      summary: { oursMs: spread((r) => r.oursMs), packageMs: spread((r) => r.packageMs), ratio: spread((r) => r.oursMs / r.packageMs) },
    },
    null,
    2,
  ),
);
