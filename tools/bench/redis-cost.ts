/**
 * What one client's operations cost a cluster's Redis, where the cost could grow with what the
 * client put there: a reconnect of a user with many scheduled messages (CONNECT reads what waits
 * and what is in flight: docs/messaging.md, P qu/qf), and an `any` to a group with many members,
 * by each strategy (ROUTE_ANY visits the members in the group's index: any-index-scripts.ts);
 * and, for scale, a durable \`send\` to an online user who acks (STORE, ROUTE_USER, ACKS).
 * Each is run small (the baseline, in the same run) and large, on one node and a private
 * redis-server, repeated.
 *
 *   npm run bench:redis-cost [-- --repeat 3 --scheduled 9999 --members 2000 --duration 8]
 *
 * Prints JSON: per case, Redis CPU per operation (ms, INFO cpu over the window) and operations
 * a second, median [min..max] over the repetitions, and the large case over the small one.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import { harnessConfig, writeConfigFile } from '../lib/server-config.js';
import { SERVER_MAIN, startServer } from '../lib/server-process.js';
import { redisServerAvailable, startPrivateRedis, type PrivateRedis } from '../lib/redis-server.js';
import { spread, type Spread } from './lib/repetitions.js';
import { toolArgs } from '../lib/cli.js';

const values = toolArgs({
  command: 'npm run bench:redis-cost --',
  about: "What a reconnect with many scheduled messages and an `any` to a large group cost a cluster's Redis, against the small case in the same run (and a durable send for scale). JSON on stdout.",
  options: {
    repeat: { type: 'int', default: 3, min: 1, help: 'repetitions; the summary gives the median and spread' },
    scheduled: { type: 'int', default: 9999, min: 1, help: 'scheduled messages waiting for the reconnecting user (the large case)' },
    members: { type: 'int', default: 2000, min: 1, help: 'members of the large group of the `any` case' },
    duration: { type: 'number', default: 8, help: 'seconds of each measured window' },
  },
});
const REPEAT = values.repeat;
const SCHEDULED = values.scheduled;
const MEMBERS = values.members;
const DURATION_MS = values.duration * 1000;
/** The small case of each: what an ordinary user or group has. */
const SMALL = 10;
/** Reconnect loops, and `any` frames in flight: enough to keep one node and Redis busy. */
const LOOPS = 4;
const IN_FLIGHT = 50;
const log = (line: string): void => void process.stderr.write(`${line}\n`);

type Frame = Record<string, unknown>;
type Client = { ws: WebSocket; onFrame(handler: (f: Frame) => void): void; send(f: Frame): void; close(): void };

function connect(port: number, user: string): Promise<Client> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}/ws?user=${encodeURIComponent(user)}`);
    const handlers: Array<(f: Frame) => void> = [];
    const client: Client = { ws, onFrame: (h) => handlers.push(h), send: (f) => ws.send(JSON.stringify(f)), close: () => ws.close() };
    ws.on('message', (data: Buffer) => {
      const f = JSON.parse(data.toString()) as Frame;
      if (f.op === 'welcome') resolve(client);
      for (const h of handlers) h(f);
    });
    ws.on('error', reject);
  });
}

/** Redis's CPU seconds so far (user + system). */
async function redisCpu(redis: PrivateRedis): Promise<number> {
  const info = await redis.client().info('cpu');
  return Number(/used_cpu_user:([\d.]+)/.exec(info)![1]) + Number(/used_cpu_sys:([\d.]+)/.exec(info)![1]);
}

interface Window {
  opsPerSecond: number;
  redisCpuMsPerOp: number;
}

/** `sender` keeps IN_FLIGHT copies of `frame` unanswered for the duration: resolves with how many were answered. */
function closedLoop(sender: Client, frame: Frame): Promise<number> {
  return new Promise<number>((resolve) => {
    const stopAt = Date.now() + DURATION_MS;
    let answered = 0;
    let out = 0;
    const fire = (): void => {
      out++;
      sender.send(frame);
    };
    sender.onFrame((f) => {
      if (f.op !== 'ack' && f.op !== 'err') return;
      answered++;
      out--;
      if (Date.now() < stopAt) fire();
      else if (out === 0) resolve(answered);
    });
    for (let i = 0; i < IN_FLIGHT; i++) fire();
  });
}

/** Runs `load` (which resolves with the operations it did) and reads Redis's CPU around it. */
async function measured(redis: PrivateRedis, load: () => Promise<number>): Promise<Window> {
  const cpu = await redisCpu(redis);
  const started = performance.now();
  const ops = await load();
  const seconds = (performance.now() - started) / 1000;
  return { opsPerSecond: Math.round(ops / seconds), redisCpuMsPerOp: ((await redisCpu(redis)) - cpu) * 1000 / ops };
}

/** `user` gets `count` sends due in a day, then reconnects from LOOPS loops for the duration. */
async function reconnects(port: number, redis: PrivateRedis, user: string, count: number): Promise<Window> {
  const planner = await connect(port, `planner-${user}`);
  await new Promise<void>((resolve) => {
    let acked = 0;
    planner.onFrame((f) => f.op === 'ack' && ++acked === count && resolve());
    for (let n = 0; n < count; n++) planner.send({ op: 'send', to: user, data: n, at: Date.now() + 86_400_000, ref: `${n}` });
  });
  planner.close();
  return measured(redis, async () => {
    const stopAt = Date.now() + DURATION_MS;
    let connections = 0;
    const loop = async (): Promise<void> => {
      for (; Date.now() < stopAt; connections++) (await connect(port, user)).close();
    };
    await Promise.all(Array.from({ length: LOOPS }, loop));
    return connections;
  });
}

/**
 * `members` users join `group` and ack what they get; then, for each of `strategies` in turn, one
 * sender keeps IN_FLIGHT `any` frames going for the duration.
 */
async function anys(port: number, redis: PrivateRedis, group: string, members: number, strategies: readonly string[]): Promise<Window[]> {
  const clients: Client[] = [];
  for (let i = 0; i < members; i += 100) {
    const batch = await Promise.all(Array.from({ length: Math.min(100, members - i) }, (_, k) => connect(port, `${group}-m${i + k}`)));
    for (const c of batch) {
      c.onFrame((f) => f.op === 'msg' && f.ackReq === true && c.send({ op: 'ack', id: f.id }));
      await new Promise<void>((resolve) => {
        c.onFrame((f) => f.op === 'joined' && resolve());
        c.send({ op: 'join', group });
      });
    }
    clients.push(...batch);
  }
  const windows: Window[] = [];
  for (const strategy of strategies) {
    const sender = await connect(port, `${group}-boss-${strategy}`);
    windows.push(await measured(redis, () => closedLoop(sender, { op: 'any', group, data: 1, strategy, ref: 'a' })));
    sender.close();
  }
  for (const c of clients) c.close();
  return windows;
}

/** A sender keeps IN_FLIGHT durable `send`s to one online user, who acks each: Redis's cost per message of the store (STORE, ROUTE_USER, ACKS). */
async function sends(port: number, redis: PrivateRedis): Promise<Window> {
  const receiver = await connect(port, 'receiver');
  receiver.onFrame((f) => f.op === 'msg' && f.ackReq === true && receiver.send({ op: 'ack', id: f.id }));
  const sender = await connect(port, 'sender');
  const window = await measured(redis, () => closedLoop(sender, { op: 'send', to: 'receiver', data: 'a chat line of some forty bytes, or so', ref: 's' }));
  for (const c of [receiver, sender]) c.close();
  return window;
}

const CASES = ['send', 'reconnect-small', 'reconnect-large', 'any-small', 'any-large', 'any-large-least-connections', 'any-large-weighted'] as const;
type Case = (typeof CASES)[number];

async function repetition(): Promise<Record<Case, Window>> {
  const redis = await startPrivateRedis();
  const dataDir = mkdtempSync(join(tmpdir(), 'ocs-bench-store-'));
  const config = writeConfigFile(harnessConfig({
    websocket: { server: { shards: 1, max_connections: MEMBERS * 2 + 100 }, groups: { require_membership: false } },
    cluster: { redis_url: redis.url },
    store: { data_dir: dataDir, sync: 'none' },
  }));
  const server = await startServer([process.execPath, SERVER_MAIN, '--config', config.file]);
  try {
    const send = await sends(server.port, redis);
    const reconnectSmall = await reconnects(server.port, redis, 'small', SMALL);
    const reconnectLarge = await reconnects(server.port, redis, 'large', SCHEDULED);
    const [anySmall] = await anys(server.port, redis, 'crew', SMALL, ['round_robin']);
    const [anyLarge, leastConnections, weighted] = await anys(server.port, redis, 'everyone', MEMBERS, ['round_robin', 'least_connections', 'weighted']);
    return {
      send,
      'reconnect-small': reconnectSmall,
      'reconnect-large': reconnectLarge,
      'any-small': anySmall!,
      'any-large': anyLarge!,
      'any-large-least-connections': leastConnections!,
      'any-large-weighted': weighted!,
    };
  } finally {
    await server.stop();
    await redis.stop();
    config.remove();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

if (!redisServerAvailable()) {
  console.error('bench:redis-cost needs redis-server (apt-get install -y redis-server)');
  process.exit(2);
}
const runs: Array<Record<Case, Window>> = [];
for (let r = 0; r < REPEAT; r++) {
  const run = await repetition();
  log(`run ${r + 1}: ${CASES.map((c) => `${c} ${run[c].redisCpuMsPerOp.toFixed(3)} ms/op, ${run[c].opsPerSecond}/s`).join('; ')}`);
  runs.push(run);
}
const summary: Record<string, { redisCpuMsPerOp: Spread | null; opsPerSecond: Spread | null }> = {};
for (const c of CASES) summary[c] = { redisCpuMsPerOp: spread(runs.map((run) => run[c].redisCpuMsPerOp)), opsPerSecond: spread(runs.map((run) => run[c].opsPerSecond)) };
const ratio = (large: Case, small: Case): Spread | null => spread(runs.map((run) => run[large].redisCpuMsPerOp / run[small].redisCpuMsPerOp));
console.log(JSON.stringify({
  scheduled: SCHEDULED, members: MEMBERS, small: SMALL, durationS: DURATION_MS / 1000, repeat: REPEAT,
  cases: summary,
  largeOverSmall: {
    reconnect: ratio('reconnect-large', 'reconnect-small'),
    any: ratio('any-large', 'any-small'),
    anyLeastConnections: ratio('any-large-least-connections', 'any-small'),
    anyWeighted: ratio('any-large-weighted', 'any-small'),
  },
  runs,
}, null, 2));
