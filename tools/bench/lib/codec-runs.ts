// The three measurements of the codec benchmark (tools/bench/codec.ts):
// - frames: the bytes of one `msg` frame in each encoding, and what encoding it costs, in
//   this process (exact and repeatable; no server);
// - wire: a real server, a publisher and `fanout` subscribers in one encoding: bytes its
//   sockets really carry and the server's CPU per published and per delivered message;
// - offload: a real one-shard server while large messages flow, inline (codec_pool_size 0) or
//   through the codec pool: the latency of small messages on the same shard.
import { performance } from 'node:perf_hooks';
import { deflateRawSync } from 'node:zlib';
import { deflateLz4, deflateLz4HC, inflateLz4 } from '../../../src/codec/lz4.js';
import { decodeJson, encodeGroupMsg } from '../../../src/protocol/json-codec.js';
import { decodeMsgpack, writeFrame, writeGroupMsg } from '../../../src/protocol/msgpack-codec.js';
import { Broadcast } from '../../../src/shard/broadcast.js';
import { newHistogram, recordMs, summarize, type LatencySummary } from '../../lib/histogram.js';
import { cpuUsBetween, processTree, snapshotProcesses } from '../../lib/proc.js';
import { fetchServerStats } from '../../loadtest/server-stats.js';
import { PAYLOADS, type PayloadKind } from './chat-text.js';
import { join, openClient, type BenchClient, type Encoding, type Frame } from './codec-client.js';

const now = (): number => performance.timeOrigin + performance.now();
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const MSG = { id: 'mx1q2w3e4r5t.0.0.m1a2b', from: 'user-17', group: 'general', pri: 1, ts: 1_800_000_000_000 };

// --- frames -----------------------------------------------------------------------------

export interface FrameFigures {
  payload: PayloadKind;
  size: number;
  /** msgpackLz4HC: with LZ4 high compression, as a broadcast to lz4_hc_min_recipients or more. */
  bytes: Record<'json' | 'jsonDeflate' | 'msgpack' | 'msgpackLz4' | 'msgpackLz4HC', number>;
  /** JSON bytes ÷ msgpack+LZ4 bytes, and ÷ msgpack+LZ4 HC bytes. */
  jsonOverMsgpackLz4: number;
  jsonOverMsgpackLz4HC: number;
  /** µs to encode one frame (median of `rounds`): JSON text to UTF-8, msgpack, msgpack then LZ4 (HC), JSON then raw deflate. */
  encodeUs: Record<'json' | 'msgpack' | 'msgpackLz4' | 'msgpackLz4HC' | 'jsonDeflate', number>;
  /**
   * µs of the shard's own work for one pub, in this process: decode the client's `pub` frame
   * (as src/shard/dispatch.ts does) and encode the `msg` its members get, once (broadcast.ts),
   * all in one encoding. What uWS and the kernel then do per recipient is not in it.
   */
  pubPathUs: Record<'json' | 'msgpack' | 'msgpackLz4', number>;
}

/** `jsonDeflate` is zlib's raw deflate of the JSON frame, what permessage-deflate sends without context takeover. */
export function frameFigures(payload: PayloadKind, size: number, lz4Threshold: number, rounds: number): FrameFigures {
  const data = PAYLOADS[payload](size, 7, MSG.ts);
  const json = Buffer.from(encodeGroupMsg(MSG.id, MSG.from, MSG.group, data, MSG.pri, MSG.ts));
  const msgpack = writeGroupMsg(MSG.id, MSG.from, MSG.group, data, MSG.pri, MSG.ts, null, Infinity);
  const lz4 = writeGroupMsg(MSG.id, MSG.from, MSG.group, data, MSG.pri, MSG.ts, deflateLz4, lz4Threshold);
  const hc = writeGroupMsg(MSG.id, MSG.from, MSG.group, data, MSG.pri, MSG.ts, deflateLz4HC, lz4Threshold);
  const pub = { op: 'pub', group: MSG.group, data };
  const jsonPub = toArrayBuffer(Buffer.from(JSON.stringify(pub)));
  const msgpackPub = toArrayBuffer(writeFrame(pub));
  const lz4Pub = toArrayBuffer(writeFrame(pub, deflateLz4, lz4Threshold));
  const plain = { deflate: null, lz4Threshold: Infinity };
  const compressed = { deflate: deflateLz4, lz4Threshold };
  const pubPath = (bytes: ArrayBuffer, binary: boolean, codec: typeof plain | typeof compressed) => () => {
    const frame = binary ? decodeMsgpack(bytes, true, 1 << 20, inflateLz4) : decodeJson(bytes, false);
    if (frame.op !== 'pub') throw new Error('not a pub');
    const message = Broadcast.of(codec, MSG.id, MSG.from, frame.group, frame.data, frame.pri, MSG.ts);
    return binary ? message.binary() : message.json();
  };
  // CPU time of this process (all its threads: the garbage collector's too), not wall time: on
  // a shared machine another process's turn on the core is not counted against the encoder.
  const time = (encode: () => unknown): number => {
    const samples: number[] = [];
    for (let r = 0; r < rounds; r++) {
      const n = Math.max(20, Math.floor(2_000_000 / size));
      const start = process.cpuUsage();
      for (let i = 0; i < n; i++) encode();
      const used = process.cpuUsage(start);
      samples.push((used.user + used.system) / n);
    }
    return round(median(samples), 2);
  };
  return {
    payload,
    size,
    bytes: { json: json.length, jsonDeflate: deflateRawSync(json).length, msgpack: msgpack.length, msgpackLz4: lz4.length, msgpackLz4HC: hc.length },
    jsonOverMsgpackLz4: round(json.length / lz4.length, 2),
    jsonOverMsgpackLz4HC: round(json.length / hc.length, 2),
    encodeUs: {
      json: time(() => Buffer.from(encodeGroupMsg(MSG.id, MSG.from, MSG.group, data, MSG.pri, MSG.ts))),
      msgpack: time(() => writeGroupMsg(MSG.id, MSG.from, MSG.group, data, MSG.pri, MSG.ts, null, Infinity)),
      msgpackLz4: time(() => writeGroupMsg(MSG.id, MSG.from, MSG.group, data, MSG.pri, MSG.ts, deflateLz4, lz4Threshold)),
      msgpackLz4HC: time(() => writeGroupMsg(MSG.id, MSG.from, MSG.group, data, MSG.pri, MSG.ts, deflateLz4HC, lz4Threshold)),
      // What permessage-deflate costs per recipient (uWS deflates each one's copy).
      jsonDeflate: time(() => deflateRawSync(Buffer.from(encodeGroupMsg(MSG.id, MSG.from, MSG.group, data, MSG.pri, MSG.ts)))),
    },
    pubPathUs: {
      json: time(pubPath(jsonPub, false, plain)),
      msgpack: time(pubPath(msgpackPub, true, plain)),
      msgpackLz4: time(pubPath(lz4Pub, true, compressed)),
    },
  };
}

function toArrayBuffer(bytes: Uint8Array): ArrayBuffer {
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
}

// --- wire -------------------------------------------------------------------------------

export interface WireRun {
  pubs: number;
  deliveries: number;
  lost: number;
  /** TCP payload bytes read by the subscribers ÷ deliveries. */
  bytesPerDelivery: number;
  /** TCP payload bytes written by the publisher ÷ pubs. */
  bytesPerPub: number;
  /** The server process's CPU (all threads) over the window ÷ pubs and ÷ deliveries. */
  cpuUsPerPub: number;
  cpuUsPerDelivery: number;
  /** Of cpuUsPerDelivery, the user-mode part (the server's code; the rest is the kernel's socket work). */
  userUsPerDelivery: number;
}

export interface WirePlan {
  port: number;
  serverPid: number;
  encoding: Encoding;
  payload: PayloadKind;
  size: number;
  fanout: number;
  rate: number;
  durationS: number;
  /** Distinguishes this run's users and group from the previous ones on the same server. */
  tag: string;
}

export async function wireRun(plan: WirePlan): Promise<WireRun> {
  const group = `bench-${plan.tag}`;
  let delivered = 0;
  const subscribers: BenchClient[] = [];
  for (let i = 0; i < plan.fanout; i++) {
    const sub = await openClient({ port: plan.port, user: `sub-${plan.tag}-${i}`, encoding: plan.encoding, onMsg: () => delivered++ });
    await join(sub, group);
    subscribers.push(sub);
  }
  // Not a member (groups.require_membership is off): each pub is delivered `fanout` times.
  const publisher = await openClient({ port: plan.port, user: `pub-${plan.tag}`, encoding: plan.encoding });
  const payload = PAYLOADS[plan.payload];
  const publish = (seq: number): void => publisher.send({ op: 'pub', group, data: payload(plan.size, seq, now()) });
  // Warm-up, unmeasured: enough pubs that the JIT has settled (the first run on a fresh server
  // paid for it otherwise), up to about 1 MB of data.
  const warmup = Math.max(20, Math.min(500, Math.floor(1_000_000 / plan.size)));
  for (let i = 0; i < warmup; i++) publish(i);
  await until(() => delivered >= warmup * plan.fanout, 10_000).catch(() => {});
  delivered = 0;
  const readBefore = subscribers.reduce((sum, s) => sum + s.bytesRead(), 0);
  const writtenBefore = publisher.bytesWritten();
  const cpuBefore = snapshotProcesses();
  const pubs = Math.max(1, Math.round(plan.rate * plan.durationS));
  const started = performance.now();
  for (let k = 0; k < pubs; k++) {
    const due = started + (k * 1000) / plan.rate;
    const wait = due - performance.now();
    if (wait > 1) await sleep(wait);
    publish(1000 + k);
  }
  await until(() => delivered >= pubs * plan.fanout, 5000).catch(() => {}); // what is missing is reported as lost
  const cpuAfter = snapshotProcesses();
  const tree = processTree(cpuAfter, plan.serverPid);
  const cpuUs = cpuUsBetween(cpuBefore, cpuAfter, tree);
  const userUs = cpuUsBetween(cpuBefore, cpuAfter, tree, 'user');
  const read = subscribers.reduce((sum, s) => sum + s.bytesRead(), 0) - readBefore;
  const written = publisher.bytesWritten() - writtenBefore;
  for (const c of [...subscribers, publisher]) c.close();
  return {
    pubs,
    deliveries: delivered,
    lost: pubs * plan.fanout - delivered,
    bytesPerDelivery: round(read / Math.max(1, delivered), 1),
    bytesPerPub: round(written / pubs, 1),
    cpuUsPerPub: round(cpuUs / pubs, 2),
    cpuUsPerDelivery: round(cpuUs / Math.max(1, delivered), 3),
    userUsPerDelivery: round(userUs / Math.max(1, delivered), 3),
  };
}

// --- offload ----------------------------------------------------------------------------

export interface OffloadPlan {
  port: number;
  serverPid: number;
  /** Bytes of each large message's data. */
  largeSize: number;
  /** Large messages per second. */
  largeRate: number;
  smallRate: number;
  durationS: number;
  payload: PayloadKind;
}

export interface OffloadRun {
  small: LatencySummary;
  smallLost: number;
  largePubs: number;
  largeLost: number;
  /** Server CPU (all threads, the pool's too) ÷ large messages. */
  cpuUsPerLarge: number;
  /** Tasks the server handed to its codec pool (codec_offloaded, /stats) ÷ large messages: about 1 with the pool, 0 inline; null when /stats did not answer. */
  offloadedPerLarge: number | null;
}

/**
 * Large messages from a msgpack+LZ4 client to a group of two msgpack and two JSON members
 * (so the shard decodes, encodes both forms and compresses), and small ones from a JSON client
 * to another group of two of each, on a one-shard server. Small latency: from the sender's
 * clock to a member's receipt (same process, same clock).
 */
export async function offloadRun(plan: OffloadPlan): Promise<OffloadRun> {
  const latency = newHistogram();
  let smallGot = 0;
  let largeGot = 0;
  let measuring = false;
  const onSmall = (m: Frame): void => {
    smallGot++;
    if (measuring) recordMs(latency, now() - ((m.data as { sentAt: number }).sentAt ?? 0));
  };
  const clients: BenchClient[] = [];
  const member = async (user: string, encoding: Encoding, group: string, onMsg: (m: Frame) => void, countOnlyFrom?: number): Promise<void> => {
    const c = await openClient({ port: plan.port, user, encoding, onMsg, ...(countOnlyFrom === undefined ? {} : { countOnlyFrom }) });
    await join(c, group);
    clients.push(c);
  };
  for (const [i, encoding] of (['msgpack+lz4', 'msgpack+lz4', 'json', 'json'] as const).entries()) {
    // Counted, not decoded: the generator's CPU goes to the small messages it times.
    await member(`big-${i}`, encoding, 'big', () => largeGot++, 1024);
    await member(`small-${i}`, encoding, 'small', onSmall);
  }
  const largePublisher = await openClient({ port: plan.port, user: 'big-pub', encoding: 'msgpack+lz4' });
  const smallPublisher = await openClient({ port: plan.port, user: 'small-pub', encoding: 'json' });
  clients.push(largePublisher, smallPublisher);
  const payload = PAYLOADS[plan.payload];
  const run = async (seconds: number): Promise<{ large: number; small: number }> => {
    const started = performance.now();
    let large = 0;
    let small = 0;
    while (performance.now() - started < seconds * 1000) {
      const elapsed = performance.now() - started;
      while (large < (elapsed * plan.largeRate) / 1000) largePublisher.send({ op: 'pub', group: 'big', data: payload(plan.largeSize, large++, now()) });
      while (small < (elapsed * plan.smallRate) / 1000) smallPublisher.send({ op: 'pub', group: 'small', data: PAYLOADS.prose(128, small++, now()) });
      await sleep(1);
    }
    return { large, small };
  };
  const warm = await run(1); // warm-up: the pool's thread starts, the JIT settles
  // Its deliveries are in before counting starts, so none is counted as a measured one.
  await until(() => smallGot >= warm.small * 4 && largeGot >= warm.large * 4, 10_000).catch(() => {});
  smallGot = 0;
  largeGot = 0;
  measuring = true;
  const offloadedBefore = await offloadedTasks(plan.port);
  const cpuBefore = snapshotProcesses();
  const sent = await run(plan.durationS);
  await until(() => smallGot >= sent.small * 4 && largeGot >= sent.large * 4, 10_000).catch(() => {});
  const cpuAfter = snapshotProcesses();
  measuring = false;
  const offloadedAfter = await offloadedTasks(plan.port);
  for (const c of clients) c.close();
  return {
    small: summarize(latency),
    smallLost: sent.small * 4 - smallGot,
    largePubs: sent.large,
    largeLost: sent.large * 4 - largeGot,
    cpuUsPerLarge: round(cpuUsBetween(cpuBefore, cpuAfter, processTree(cpuAfter, plan.serverPid)) / Math.max(1, sent.large), 1),
    offloadedPerLarge: offloadedBefore === null || offloadedAfter === null ? null : round((offloadedAfter - offloadedBefore) / Math.max(1, sent.large), 2),
  };
}

/** The server's codec_offloaded counter: whether the pool really took the large messages. */
async function offloadedTasks(port: number): Promise<number | null> {
  const stats = await fetchServerStats('127.0.0.1', port, 5000);
  const totals = stats.available ? (stats.raw as { totals?: { codec_offloaded?: unknown } }).totals : undefined;
  return typeof totals?.codec_offloaded === 'number' ? totals.codec_offloaded : null;
}

// --- helpers ----------------------------------------------------------------------------

async function until(done: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  while (!done()) {
    if (performance.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms`);
    await sleep(5);
  }
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

export function round(value: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}
