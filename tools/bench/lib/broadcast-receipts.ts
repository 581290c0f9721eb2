// The receiving side of the broadcast load: every frame a client gets, its deliveries found
// by the fast parser (one frame in N checked against JSON.parse), each (publisher, seq)
// counted once per connection, duplicates and misrouted deliveries apart, latency recorded
// for the measured ones.
import { performance } from 'node:perf_hooks';
import type { Histogram } from 'hdr-histogram-js';
import { FrameKind } from '../../lib/frame-scan.js';
import { newHistogram, recordMs } from '../../lib/histogram.js';
import { type BroadcastPlan, isMeasured } from './broadcast-plan.js';
import { summaryMs, type LoadResult } from './broadcast-load-types.js';
import { parseDeliveries, sameStamps, verifyDeliveries } from './deliveries.js';

export class BroadcastReceipts {
  /** Per connection: one bit per (publisher slot, seq) already received, to find duplicates. */
  private readonly seen: Uint8Array[] = [];
  readonly latency = newHistogram();
  private readonly latencyBySecond: Histogram[] = [];
  private readonly receivedByPublisher: number[];
  readonly serverErrors: Record<string, number> = {};
  /** performance.now() when the measured window began: latencyBySecond counts from it. */
  windowStart = 0;

  received = 0;
  duplicates = 0;
  misrouted = 0;
  frames = 0;
  batchFrames = 0;
  verifiedFrames = 0;
  parserMismatches = 0;

  // The frame being parsed, for onParsedDelivery: one callback for all frames instead of a
  // closure per frame (the hot path runs ~100k times a second).
  private frameConnection = 0;
  private frameGroup = 0;
  private frameReceivedAt = 0;
  private readonly onParsedDelivery = (publisher: number, seq: number, sentAt: number): void =>
    this.onDelivery(this.frameConnection, this.frameGroup, publisher, seq, sentAt, this.frameReceivedAt);

  constructor(
    private readonly plan: BroadcastPlan,
    private readonly verifyEvery: number,
  ) {
    this.receivedByPublisher = new Array<number>(plan.publishers).fill(0);
  }

  /** Connection c, a member of `group`, starts with nothing received. */
  addConnection(c: number, group: number): void {
    const slots = this.plan.publishersInGroup[group]!;
    this.seen[c] = new Uint8Array(Math.ceil((slots * this.plan.seqLimit) / 8));
  }

  countServerError(code: string): void {
    this.serverErrors[code] = (this.serverErrors[code] ?? 0) + 1;
  }

  onFrame(c: number, group: number, payload: Buffer, onControl: (frame: Record<string, unknown>) => void): void {
    this.frames++;
    // One clock read per frame: every msg of a batch arrived at the same moment.
    const now = performance.timeOrigin + performance.now();
    const verify = this.verifyEvery > 0 && this.frames % this.verifyEvery === 0;
    this.frameConnection = c;
    this.frameGroup = group;
    this.frameReceivedAt = now;
    const kind = verify ? this.verifyFrame(c, group, payload, now) : parseDeliveries(payload, this.onParsedDelivery);
    if (kind === FrameKind.Batch) this.batchFrames++;
    else if (kind === FrameKind.Other) this.onControlFrame(payload, onControl);
  }

  private onControlFrame(payload: Buffer, onControl: (frame: Record<string, unknown>) => void): void {
    let frame: unknown;
    try {
      frame = JSON.parse(payload.toString('utf8'));
    } catch {
      this.countServerError('(frame is not JSON)');
      return;
    }
    if (typeof frame === 'object' && frame !== null) onControl(frame as Record<string, unknown>);
  }

  /**
   * Parses one frame both ways, counts a disagreement, and records what JSON.parse found.
   */
  private verifyFrame(c: number, group: number, payload: Buffer, now: number): FrameKind {
    this.verifiedFrames++;
    const fast: number[][] = [];
    const kind = parseDeliveries(payload, (p, s, t) => fast.push([p, s, t]));
    const reference = verifyDeliveries(payload);
    if (reference === null) {
      if (kind !== FrameKind.Other) this.parserMismatches++;
      return FrameKind.Other;
    }
    if (kind === FrameKind.Other || !sameStamps(fast, reference)) this.parserMismatches++;
    for (const [p, s, t] of reference) this.onDelivery(c, group, p, s, t, now);
    return kind === FrameKind.Other ? FrameKind.Msg : kind;
  }

  private onDelivery(c: number, group: number, publisher: number, seq: number, sentAt: number, now: number): void {
    const plan = this.plan;
    if (plan.publisherGroup[publisher] !== group || seq < 0 || seq >= plan.seqLimit || !Number.isInteger(seq)) {
      this.misrouted++;
      return;
    }
    const bit = plan.publisherSlot[publisher]! * plan.seqLimit + seq;
    const seen = this.seen[c]!;
    const mask = 1 << (bit & 7);
    if (seen[bit >>> 3]! & mask) {
      this.duplicates++;
      return;
    }
    seen[bit >>> 3]! |= mask;
    if (!isMeasured(plan, publisher, seq)) return; // warm-up
    this.received++;
    this.receivedByPublisher[publisher]!++;
    recordMs(this.latency, now - sentAt);
    const second = Math.floor((now - performance.timeOrigin - this.windowStart) / 1000);
    if (second >= 0) recordMs((this.latencyBySecond[second] ??= newHistogram()), now - sentAt);
  }

  bySecond(): LoadResult['latencyBySecond'] {
    return Array.from(this.latencyBySecond, (h, second) => {
      const summary = h ? summaryMs(h) : null;
      return { second, count: summary?.count ?? 0, p99: summary?.p99 ?? 0, max: summary?.max ?? 0 };
    });
  }

  /** Publishers that lost deliveries, worst first (at most 10). */
  lossByPublisher(): LoadResult['lossByPublisher'] {
    const plan = this.plan;
    return plan.measuredPubsByPublisher
      .map((pubs, p) => ({
        publisher: p,
        group: plan.publisherGroup[p]!,
        expected: pubs * plan.groupSize[plan.publisherGroup[p]!]!,
        received: this.receivedByPublisher[p]!,
      }))
      .filter((row) => row.received < row.expected)
      .sort((a, b) => b.expected - b.received - (a.expected - a.received))
      .slice(0, 10);
  }
}
