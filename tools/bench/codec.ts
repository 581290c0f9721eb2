// The codec benchmark: what ocs.v1.msgpack and LZ4 save on the wire and cost the server
// against ocs.v1.json (with and without permessage-deflate), at chat-like payload sizes, and
// what the codec pool does for small messages while large ones flow. Every figure is the
// median of --repeats runs with its spread (min, max); JSON is the baseline in the same run.
// Prints one JSON document on stdout (progress on stderr); tools/bench/README.md explains it.
//
// Usage: npm run bench:codec -- [--repeats 3] [--duration 3] [--parts frames,wire,offload]
//        [--sizes 128,4096,65536] [--payload prose|thread] [--fanout 20]
//        [--offload-sizes 4096,16384,32768,65536,131072] [--offload-bytes-per-s 2000000] [--pool-nice N] [--json-out FILE]
//        [--encodings json,json+deflate,msgpack,msgpack+lz4] [--server-node-args "--cpu-prof --cpu-prof-dir=DIR"]
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { SERVER_MAIN, startServer, type ServerProcess } from '../lib/server-process.js';
import { harnessConfig, writeConfigFile, type ConfigTree } from '../lib/server-config.js';
import { ENCODINGS, serverPerformance, type Encoding } from './lib/codec-client.js';
import { frameFigures, median, offloadRun, round, wireRun, type OffloadRun, type WireRun } from './lib/codec-runs.js';
import { PAYLOADS, type PayloadKind } from './lib/chat-text.js';
import { toolArgs } from '../lib/cli.js';

const TARGETS = {
  /** JSON bytes ÷ msgpack+LZ4 bytes per delivery at 4 KB, at least. */
  bytesRatioAt4k: 2,
  /** msgpack CPU per delivery ÷ JSON's at 128 B, at most. */
  cpuRatioAt128: 1,
  /** At 64 KB, the pool's small-message P99 below inline's. */
  poolP99BelowInlineAt64k: true,
};

const log = (line: string): void => void process.stderr.write(`${line}\n`);
const PARTS = ['frames', 'wire', 'offload'] as const;

const values = toolArgs({
  command: 'npm run bench:codec --',
  about: 'What ocs.v1.msgpack and LZ4 save on the wire and cost the server against ocs.v1.json (with and without permessage-deflate), and what the codec pool does for small messages while large ones flow. JSON on stdout.',
  options: {
    repeats: { type: 'int', default: 3, min: 1, help: 'runs of every figure; each is the median with its spread' },
    duration: { type: 'number', default: 3, min: 0.5, help: 'seconds of each measured run' },
    parts: { type: 'names', known: PARTS, default: PARTS.join(','), help: 'frames: encoding alone; wire: a server and its clients; offload: small messages beside large ones' },
    sizes: { type: 'ints', default: '128,4096,65536', min: 1, help: 'payload sizes in bytes' },
    payload: { type: 'choice', known: Object.keys(PAYLOADS) as PayloadKind[], default: 'prose', help: 'chat-like text: prose or a thread of messages' },
    fanout: { type: 'int', default: 20, min: 1, help: 'members receiving each message' },
    'offload-sizes': { type: 'ints', default: '4096,16384,32768,65536,131072', min: 1, help: 'sizes of the large messages in the offload part' },
    'offload-bytes-per-s': { type: 'number', default: 2_000_000, min: 1, help: 'bytes a second of large messages in the offload part' },
    'small-rate': { type: 'number', default: 200, min: 1, help: 'small messages a second beside them' },
    'json-out': { type: 'string', value: 'FILE', help: 'also write the JSON result to FILE' },
    encodings: { type: 'names', known: ENCODINGS, default: ENCODINGS.join(','), help: 'encodings compared' },
    'server-node-args': { type: 'string', default: '', value: '"ARGS"', help: 'more node options for every server, space-separated (e.g. --cpu-prof: a profile per thread, the shards\' too)' },
    'pool-nice': { type: 'int', default: -1, min: -1, help: "the pool threads' nice increment (performance.codec_pool_nice, 0-19); -1: the server's default" },
  },
}, (v) => {
  if (v['pool-nice'] > 19) throw new Error('--pool-nice: at most 19');
});
const { repeats, sizes, fanout, encodings } = values;
const durationS = values.duration;
const parts = new Set<string>(values.parts);
const payload = values.payload;
const offloadSizes = values['offload-sizes'];
const offloadBytesPerS = values['offload-bytes-per-s'];
const smallRate = values['small-rate'];
const poolNice = values['pool-nice'] < 0 ? {} : { codec_pool_nice: values['pool-nice'] };
const serverNodeArgs = values['server-node-args'].split(' ').filter(Boolean);

/** Publications per second at each size: enough deliveries to measure, not so many that this generator saturates. */
const rateFor = (size: number): number => (size <= 1024 ? 500 : size <= 8192 ? 200 : 20);

interface Spread {
  median: number;
  min: number;
  max: number;
  runs: number[];
}
function spread(runs: number[]): Spread {
  return { median: round(median(runs), 3), min: Math.min(...runs), max: Math.max(...runs), runs };
}

/** A server of its own for `work`: a fresh store in a temporary directory, removed afterwards. */
async function withServer<T>(config: ConfigTree, work: (server: ServerProcess) => Promise<T>): Promise<T> {
  const dataDir = mkdtempSync(join(tmpdir(), 'ocs-bench-data-'));
  // logging info: startServer waits for the "ready" line.
  const file = writeConfigFile(harnessConfig({ ...config, store: { data_dir: dataDir, sync: 'none' }, logging: { level: 'info' } }));
  try {
    // A generous start-up deadline: on a machine shared with other benchmarks a start may wait long for a core.
    const server = await startServer([process.execPath, ...serverNodeArgs, SERVER_MAIN, '--config', file.file], { readyTimeoutMs: 120_000 });
    try {
      return await work(server);
    } finally {
      await server.stop();
    }
  } finally {
    file.remove();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const startedAt = new Date().toISOString();
  const report: Record<string, unknown> = {
    benchmark: 'codec',
    startedAt,
    config: { repeats, durationS, payload, sizes, encodings, serverNodeArgs, fanout, offloadSizes, offloadBytesPerS, smallRate, lz4Threshold: 1024, ...poolNice },
    environment: { node: process.version, cpus: cpus().length, cpuModel: cpus()[0]?.model ?? '' },
    targets: TARGETS,
  };

  if (parts.has('frames')) {
    log('frames: encoding in this process');
    report.frames = (['prose', 'thread'] as const).flatMap((kind) => [128, 1024, 4096, 16384, 65536].map((size) => frameFigures(kind, size, 1024, repeats)));
  }

  if (parts.has('wire')) {
    // runs[encoding][size][fanout] -> one WireRun per repeat
    const runs = new Map<string, WireRun[]>();
    const key = (e: Encoding, size: number, f: number): string => `${e}|${size}|${f}`;
    for (let r = 0; r < repeats; r++) {
      // One server per distinct setting (compression off; on; on with LZ4 HC for every group message).
      const settings = [...new Set(encodings.map((e) => JSON.stringify(serverPerformance(e))))];
      for (const setting of settings) {
        await withServer(
          { websocket: { server: { shards: 1, max_payload: 256 * 1024 }, groups: { require_membership: false }, performance: JSON.parse(setting) as ConfigTree } },
          async (server) => {
            // Rotated each repeat, so that neither encoding always runs first on a fresh server.
            const these = encodings.filter((e) => JSON.stringify(serverPerformance(e)) === setting);
            const order = these.map((_, i) => these[(i + r) % these.length]!);
            // Unmeasured: a fresh server's first seconds (start-up garbage collected, timers
            // settling) otherwise fall on whichever encoding runs first.
            await wireRun({ port: server.port, serverPid: server.pid, encoding: order[0]!, payload, size: sizes[0]!, fanout: 1, rate: rateFor(sizes[0]!), durationS: 1, tag: `${r}-warm` });
            for (const size of sizes) {
              for (const encoding of order) {
                for (const f of [1, fanout]) {
                  const run = await wireRun({ port: server.port, serverPid: server.pid, encoding, payload, size, fanout: f, rate: rateFor(size), durationS, tag: `${r}-${encoding}-${size}-${f}` });
                  log(`wire ${r + 1}/${repeats} ${encoding} ${size} B x${f}: ${run.bytesPerDelivery} B/delivery, ${run.cpuUsPerDelivery} µs CPU/delivery (${run.userUsPerDelivery} user), ${run.cpuUsPerPub} µs/pub, lost ${run.lost}`);
                  runs.set(key(encoding, size, f), [...(runs.get(key(encoding, size, f)) ?? []), run]);
                }
              }
            }
          },
        );
      }
    }
    const wire = sizes.flatMap((size) =>
      encodings.map((encoding) => {
        const single = runs.get(key(encoding, size, 1)) ?? [];
        const fan = runs.get(key(encoding, size, fanout)) ?? [];
        return {
          encoding,
          size,
          bytesPerDelivery: spread(fan.map((x) => x.bytesPerDelivery)),
          bytesPerPub: spread(single.map((x) => x.bytesPerPub)),
          // Per published message: the one-subscriber runs (one delivery each); per delivery: the fan-out runs.
          cpuUsPerPub: spread(single.map((x) => x.cpuUsPerPub)),
          cpuUsPerDelivery: spread(fan.map((x) => x.cpuUsPerDelivery)),
          userUsPerDelivery: spread(fan.map((x) => x.userUsPerDelivery)),
          lost: [...single, ...fan].reduce((sum, x) => sum + x.lost, 0),
        };
      }),
    );
    report.wire = wire;
    const at = (encoding: Encoding, size: number) => wire.find((w) => w.encoding === encoding && w.size === size);
    const json4k = at('json', 4096);
    const lz4k = at('msgpack+lz4', 4096);
    const hc4k = at('msgpack+lz4hc', 4096);
    const json128 = at('json', 128);
    const mp128 = at('msgpack', 128);
    // Within one repeat JSON and msgpack ran on the same server minutes apart: their ratio,
    // taken per repeat, cancels much of what the machine's load does to both.
    const pairedCpu = (size: number, f: number, field: 'cpuUsPerDelivery' | 'userUsPerDelivery' = 'cpuUsPerDelivery'): Spread | null => {
      const json = runs.get(key('json', size, f)) ?? [];
      const mp = runs.get(key('msgpack', size, f)) ?? [];
      if (json.length === 0 || json.length !== mp.length) return null;
      return spread(mp.map((m, i) => round(m[field] / json[i]![field], 3)));
    };
    report.wireChecks = {
      bytesRatioAt4k: json4k && lz4k ? round(json4k.bytesPerDelivery.median / lz4k.bytesPerDelivery.median, 2) : null,
      bytesRatioAt4kHC: json4k && hc4k ? round(json4k.bytesPerDelivery.median / hc4k.bytesPerDelivery.median, 2) : null,
      cpuRatioAt128: json128 && mp128 ? round(mp128.cpuUsPerDelivery.median / json128.cpuUsPerDelivery.median, 2) : null,
      /** msgpack ÷ JSON CPU per delivery at 128 B, each repeat's ratio (fan-out runs), and per pub (one-subscriber runs). */
      cpuRatioAt128PerRepeat: pairedCpu(128, fanout),
      cpuRatioAt128PerPubPerRepeat: pairedCpu(128, 1),
      /** The same, user-mode CPU only: the server's own code, without the kernel's socket work. */
      userCpuRatioAt128PerRepeat: pairedCpu(128, fanout, 'userUsPerDelivery'),
    };
  }

  if (parts.has('offload')) {
    const offload = [];
    for (const size of offloadSizes) {
      const byMode: Record<'inline' | 'pool', OffloadRun[]> = { inline: [], pool: [] };
      for (let r = 0; r < repeats; r++) {
        // Alternating, so a disturbance of the machine falls on both modes alike.
        for (const mode of r % 2 === 0 ? (['inline', 'pool'] as const) : (['pool', 'inline'] as const)) {
          // Half the size: a message of `size` bytes of data is a body of a few bytes less than
          // `size` (and a compressed frame smaller still), so a threshold of `size` itself would
          // leave every large message inline (offloadedPerLarge says whether the pool took them).
          const performance = { codec_pool_size: mode === 'pool' ? 1 : 0, codec_offload_threshold: Math.floor(size / 2), ...poolNice };
          const run = await withServer({ websocket: { server: { shards: 1, max_payload: 256 * 1024 }, groups: { require_membership: false }, performance } }, (server) =>
            offloadRun({ port: server.port, serverPid: server.pid, largeSize: size, largeRate: offloadBytesPerS / size, smallRate, durationS, payload }),
          );
          log(`offload ${r + 1}/${repeats} ${size} B ${mode}: small p50 ${run.small.p50Ms} ms p99 ${run.small.p99Ms} ms max ${run.small.maxMs} ms, ${run.cpuUsPerLarge} µs CPU/large, ${run.offloadedPerLarge} pool tasks/large, lost ${run.smallLost}/${run.largeLost}`);
          byMode[mode].push(run);
        }
      }
      const summary = (runs: OffloadRun[]) => ({
        smallP50Ms: spread(runs.map((x) => x.small.p50Ms)),
        smallP99Ms: spread(runs.map((x) => x.small.p99Ms)),
        smallMaxMs: spread(runs.map((x) => x.small.maxMs)),
        cpuUsPerLarge: spread(runs.map((x) => x.cpuUsPerLarge)),
        offloadedPerLarge: runs.map((x) => x.offloadedPerLarge),
        lost: runs.reduce((sum, x) => sum + x.smallLost + x.largeLost, 0),
      });
      const inline = summary(byMode.inline);
      const pool = summary(byMode.pool);
      offload.push({ largeSize: size, largeRate: round(offloadBytesPerS / size, 1), inline, pool, poolWins: pool.smallP99Ms.median < inline.smallP99Ms.median });
    }
    report.offload = offload;
    // The smallest size from which the pool wins at every larger size measured.
    let crossover: number | null = null;
    for (let i = offload.length - 1; i >= 0 && offload[i]!.poolWins; i--) crossover = offload[i]!.largeSize;
    report.offloadCrossover = crossover;
    const at64 = offload.find((o) => o.largeSize === 65536);
    report.offloadChecks = { poolP99BelowInlineAt64k: at64 ? at64.poolWins : null };
  }

  const json = JSON.stringify(report, null, 2);
  console.log(json);
  if (values['json-out']) {
    mkdirSync(dirname(values['json-out']), { recursive: true });
    writeFileSync(values['json-out'], json + '\n');
  }
}

await main();
