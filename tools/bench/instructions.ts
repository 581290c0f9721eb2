/**
 * Instructions per delivery, counted by callgrind (lib/callgrind.ts): the broadcast
 * benchmark's comparison with the uWS baseline in a figure the host's noise cannot move. It
 * counts user space only (the kernel's share of a delivery, the larger one, is the same
 * system calls for both servers: README, "Tail latency"), and valgrind runs the server about
 * 50x slower, so the load is small: by default 200 connections in 2 groups, 1,000 pubs.
 *
 *   npm run bench:instructions [-- --targets baseline,shards1,metrics-off --repeat 3]
 *   npm run bench:instructions -- --main /other/build/dist/src/main.js   # that build's server
 *
 * Each target runs at two rates with the same pubs, so that its instructions split into a
 * part per delivery and a part per second (timers, the metrics cycle):
 *   window instructions = perDelivery x deliveries + perSecond x seconds
 * and the figure compared is the two at the broadcast benchmark's load (--at, 50,000
 * deliveries/s): perDelivery + perSecond / at, and the same without V8's optimising compiler
 * (steadyAtLoad: a long-running server has compiled its code; a window catches compile jobs by
 * chance). Each repetition runs every target (rotated order); the summary gives medians and
 * spreads, and each real-server target's ratios to the baseline of the same repetition. JSON
 * on stdout. Counts depend a little on timing too (how many events one turn of a loop takes),
 * so they are repeated like any other figure.
 */
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { connectWs, type WsClient } from '../wsclient/client.js';
import { startServer } from '../lib/server-process.js';
import { prepareTarget, TARGET_NAMES, type TargetName } from './lib/broadcast-targets.js';
import { callgrindMissing, dumpCounters, readWindow, removeRunFiles, underCallgrind, zeroCounters, type CallgrindWindow } from './lib/callgrind.js';
import { rotation, spread } from './lib/repetitions.js';
import { toolArgs } from '../lib/cli.js';

const values = toolArgs(
  {
    command: 'npm run bench:instructions --',
    about: 'User-space instructions per delivery counted by callgrind (valgrind), each target against the uWS baseline of the same repetition: a figure a noisy host does not move. JSON on stdout.',
    options: {
      targets: { type: 'names', known: TARGET_NAMES, default: 'baseline,shards1,metrics-off', help: 'servers measured in each repetition' },
      repeat: { type: 'int', default: 3, min: 1, help: 'repetitions, each running every target (rotated order)' },
      connections: { type: 'int', default: 200, min: 1, help: 'connections, joined to the groups in turn' },
      groups: { type: 'int', default: 2, min: 1, help: 'groups' },
      pubs: { type: 'int', default: 1000, min: 1, help: 'pubs in each of the two windows' },
      rates: { type: 'numbers', default: '40,80', help: 'the two pub rates that split a per-delivery part from a per-second part' },
      warmup: { type: 'number', default: 60, help: 'seconds of warm-up before the windows' },
      'warmup-rate': { type: 'number', default: 160, help: 'pubs a second during the warm-up' },
      at: { type: 'number', default: 50_000, min: 1, help: 'deliveries a second at which the two parts are added up' },
      main: { type: 'string', value: 'FILE', help: "another build's dist/src/main.js for the real-server targets" },
      top: { type: 'int', default: 25, help: 'functions listed per target' },
    },
  },
  (v) => {
    const [a, b] = v.rates;
    if (v.rates.length !== 2 || !(a! > 0 && b! > 0) || a === b) throw new Error('--rates: two different pub rates, e.g. 40,80');
  },
);
const { connections, groups, pubs, top: topN, targets } = values;
const rates = values.rates as [number, number];
const warmupS = values.warmup;
const warmupRate = values['warmup-rate'];
const atRate = values.at;

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const MSG = Buffer.from('"op":"msg"');

interface WindowRun {
  rate: number;
  seconds: number;
  deliveries: number;
  expected: number;
  window: CallgrindWindow;
}

/** One server under callgrind: connect, warm up, then the measured pubs at `rate`. */
async function runOnce(name: TargetName, rate: number, label: string): Promise<WindowRun> {
  // --main: another build's server in the real-server targets (a before and after, one build per invocation).
  const target = prepareTarget(name, connections, [], values.main);
  const outPrefix = join(tmpdir(), `ocs-callgrind-${label}`);
  const server = await startServer(underCallgrind(target.argv, outPrefix), { readyTimeoutMs: 180_000 });
  const clients: WsClient[] = [];
  let deliveries = 0;
  try {
    for (let i = 0; i < connections; i++) {
      const ws = await new Promise<WsClient>((resolve, reject) => {
        const client = connectWs({
          host: '127.0.0.1',
          port: server.port,
          path: `${target.endpoint}?user=u${i}`,
          handshakeTimeoutMs: 60_000,
          onOpen: () => resolve(client),
          onError: reject,
          onMessage: (payload) => {
            if (payload.indexOf(MSG) >= 0) deliveries++;
          },
        });
      });
      ws.send(JSON.stringify({ op: 'join', group: `g${i % groups}` }));
      clients.push(ws);
    }
    const publish = async (count: number, perSecond: number): Promise<number> => {
      const from = deliveries;
      const started = performance.now();
      const pad = 'x'.repeat(60); // a body of about 128 bytes, as bench:broadcast sends
      for (let sent = 0; sent < count; ) {
        const due = Math.min(count, Math.floor(((performance.now() - started) / 1000) * perSecond));
        for (; sent < due; sent++) clients[sent % groups]!.send(JSON.stringify({ op: 'pub', group: `g${sent % groups}`, data: { s: sent, t: Date.now(), p: pad } }));
        await sleep(5);
      }
      const want = from + count * (connections / groups);
      const giveUp = performance.now() + 60_000;
      while (deliveries < want && performance.now() < giveUp) await sleep(20);
      return deliveries - from;
    };
    // The same warm-up before either rate's window, so V8 has compiled as much in both; and
    // long enough in pubs (V8 optimises by calls, not time: natively the shard's per-frame
    // functions were optimised after about 6,000 pubs) that the window runs the code a
    // long-running server runs, not its baseline tier.
    await publish(Math.round(warmupS * warmupRate), warmupRate);
    zeroCounters(server.pid);
    const started = performance.now();
    const got = await publish(pubs, rate);
    const seconds = (performance.now() - started) / 1000;
    const file = dumpCounters(server.pid, outPrefix, label);
    return { rate, seconds, deliveries: got, expected: pubs * (connections / groups), window: readWindow(file, server.pid, 0) };
  } finally {
    for (const ws of clients) ws.destroy();
    await server.stop();
    removeRunFiles(outPrefix, server.pid);
    target.cleanup();
  }
}

const round1 = (n: number): number => Math.round(n * 10) / 10;

/** The two windows of one target split into instructions per delivery and per second (the same deliveries, different seconds). */
function split(a: WindowRun, b: WindowRun) {
  const perSecond = (a.window.instructions - b.window.instructions) / (a.seconds - b.seconds);
  const perDelivery = (a.window.instructions - perSecond * a.seconds) / a.deliveries;
  const byCategoryAt: Record<string, number> = {};
  for (const category of Object.keys(a.window.byCategory)) {
    const ca = a.window.byCategory[category]!;
    const cb = b.window.byCategory[category]!;
    const s = (ca - cb) / (a.seconds - b.seconds);
    byCategoryAt[category] = Math.round((ca - s * a.seconds) / a.deliveries + s / atRate);
  }
  const atLoad = Math.round(perDelivery + perSecond / atRate);
  // The same split per function: what each costs at the load, its share per delivery and per second.
  const functions = [...new Set([...a.window.functions.keys(), ...b.window.functions.keys()])].map((name) => {
    const fa = a.window.functions.get(name) ?? 0;
    const s = (fa - (b.window.functions.get(name) ?? 0)) / (a.seconds - b.seconds);
    const d = (fa - s * a.seconds) / a.deliveries;
    return { name, atLoad: round1(d + s / atRate), perDelivery: round1(d), perSecond: Math.round(s) };
  });
  // V8 optimising code still warming up lands in a window by chance, in jobs of millions of
  // instructions, and a server that has run for minutes has none left: the steady state leaves it out.
  return {
    perDelivery: Math.round(perDelivery),
    perSecond: Math.round(perSecond),
    atLoad,
    steadyAtLoad: atLoad - byCategoryAt.compiler!,
    byCategoryAtLoad: byCategoryAt,
    topAtLoad: functions.sort((x, y) => y.atLoad - x.atLoad).slice(0, topN),
  };
}

async function main(): Promise<void> {
  const missing = callgrindMissing();
  if (missing) {
    console.log(JSON.stringify({ benchmark: 'instructions', skipped: missing }));
    process.exitCode = 2;
    return;
  }
  const repetitions: Array<Record<string, ReturnType<typeof split> & { runs: Array<Omit<WindowRun, 'window'> & { instructions: number }> }>> = [];
  const repeat = values.repeat;
  for (let rep = 0; rep < repeat; rep++) {
    const results: (typeof repetitions)[number] = {};
    for (const name of rotation(targets, rep)) {
      const runs: WindowRun[] = [];
      for (const rate of rates) {
        const run = await runOnce(name, rate, `${name}-${rate}-${rep}`);
        if (run.deliveries !== run.expected) throw new Error(`${name} at ${rate} pubs/s: ${run.deliveries} of ${run.expected} deliveries`);
        process.stderr.write(`${name} rep ${rep + 1} at ${rate} pubs/s: ${Math.round(run.window.instructions / run.deliveries)} instructions per delivery over ${run.seconds.toFixed(1)} s\n`);
        runs.push(run);
      }
      results[name] = { ...split(runs[0]!, runs[1]!), runs: runs.map(({ window, ...run }) => ({ ...run, instructions: window.instructions })) };
    }
    repetitions.push(results);
  }
  const summary = targets.map((name) => {
    const ofTarget = repetitions.map((r) => r[name]!);
    const ratio = (figure: 'atLoad' | 'steadyAtLoad') => (name === 'baseline' || !targets.includes('baseline') ? null : spread(repetitions.map((r) => r[name]![figure] / r.baseline![figure])));
    return {
      target: name,
      steadyAtLoad: spread(ofTarget.map((r) => r.steadyAtLoad)),
      steadyVsBaseline: ratio('steadyAtLoad'),
      atLoad: spread(ofTarget.map((r) => r.atLoad)),
      perDelivery: spread(ofTarget.map((r) => r.perDelivery)),
      perSecond: spread(ofTarget.map((r) => r.perSecond)),
      vsBaseline: ratio('atLoad'),
      byCategoryAtLoad: Object.fromEntries(Object.keys(ofTarget[0]!.byCategoryAtLoad).map((c) => [c, spread(ofTarget.map((r) => r.byCategoryAtLoad[c]!))!.median])),
    };
  });
  console.log(JSON.stringify({ benchmark: 'instructions', config: { connections, groups, pubs, rates, warmupS, warmupRate, atDeliveriesPerSecond: atRate, repeat }, summary, repetitions }, null, 2));
  const x = (r: ReturnType<typeof spread>): string => (r ? `, ${r.median.toFixed(3)}x the baseline [${r.min.toFixed(3)}..${r.max.toFixed(3)}]` : '');
  for (const s of summary) {
    process.stderr.write(
      `${s.target}: ${s.steadyAtLoad!.median} instructions per delivery at ${atRate}/s without V8's compiler [${s.steadyAtLoad!.min}..${s.steadyAtLoad!.max}]${x(s.steadyVsBaseline)}; ` +
        `${s.atLoad!.median} with it${x(s.vsBaseline)} (${s.perDelivery!.median} per delivery + ${s.perSecond!.median} per second)\n`,
    );
  }
}

void main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
