// Reads V8's `--trace-gc-nvp` lines from a server's output and counts the pauses and the bytes
// allocated per isolate (one isolate per thread: the primary and each shard), so a benchmark can
// say which thread paused, how often, for how long, and how much it allocated per delivery,
// inside its measured window.
//
// A line looks like
//   [4711:0x5d1c3a0]     1532 ms: pause=0.9 mutator=73.4 gc=s reduce_memory=0 ... allocated=3960536 promoted=0 ...
// where the time is milliseconds since that isolate started, gc is s (scavenge), mmc (minor
// mark-compact) or ms (full mark-sweep-compact), and allocated is what the isolate allocated
// since its previous collection. The primary's isolate starts when the process does; a shard's
// a few hundred ms later, so a shard's events are placed up to that much early. The window is
// wide (seconds) and the error is stated, not hidden.

const LINE = /^\[\d+:(0x[0-9a-f]+)\]\s+(\d+) ms: pause=([\d.]+) .*?\bgc=(\w+) reduce_memory=(\d)/;
const ALLOCATED = /\ballocated=(\d+)/;

export interface GcEvent {
  isolate: string;
  /** Wall-clock time of the event (epoch ms), from the process start plus the isolate's offset. */
  at: number;
  kind: 'scavenge' | 'mark-compact';
  /** True for collections made to shrink the heap (the memory reducer). */
  reduce: boolean;
  pauseMs: number;
  /** Bytes the isolate allocated since its previous collection. */
  allocated: number;
}

export interface GcSummary {
  /** Per isolate, in the order each was first seen (the primary first). */
  isolates: {
    isolate: string;
    scavenges: number;
    scavengeMsTotal: number;
    scavengeMsMax: number;
    markCompacts: number;
    markCompactMsTotal: number;
    markCompactMsMax: number;
    /** Collections made to shrink the heap (the memory reducer), not because it was full. */
    memoryReducing: number;
    /** Bytes allocated, as V8 counted them at each collection in the window. */
    allocatedBytes: number;
  }[];
  /** Collections paused for at least 1 ms: the ones that can show in a P99 of a few ms. */
  pausesOver1Ms: number;
}

export class GcTrace {
  readonly events: GcEvent[] = [];

  /** `processStartedAt`: epoch ms just before the server process was spawned. */
  constructor(private readonly processStartedAt: number) {}

  /** Feed every output line; non-trace lines are ignored. Returns true for a trace line. */
  onLine(line: string): boolean {
    const m = LINE.exec(line);
    if (!m) return false;
    const [, isolate, ms, pause, gc, reduce] = m;
    this.events.push({
      isolate: isolate!,
      at: this.processStartedAt + Number(ms),
      kind: gc === 'ms' ? 'mark-compact' : 'scavenge',
      reduce: reduce === '1',
      pauseMs: Number(pause),
      allocated: Number(ALLOCATED.exec(line)?.[1] ?? 0),
    });
    return true;
  }

  /** Counts the events between `from` and `to` (epoch ms); all of them without bounds. */
  summarize(from = -Infinity, to = Infinity): GcSummary {
    const byIsolate = new Map<string, GcSummary['isolates'][number]>();
    let pausesOver1Ms = 0;
    for (const e of this.events) {
      if (e.at < from || e.at > to) continue;
      let s = byIsolate.get(e.isolate);
      if (!s) {
        s = { isolate: e.isolate, scavenges: 0, scavengeMsTotal: 0, scavengeMsMax: 0, markCompacts: 0, markCompactMsTotal: 0, markCompactMsMax: 0, memoryReducing: 0, allocatedBytes: 0 };
        byIsolate.set(e.isolate, s);
      }
      if (e.kind === 'scavenge') {
        s.scavenges++;
        s.scavengeMsTotal = round2(s.scavengeMsTotal + e.pauseMs);
        s.scavengeMsMax = Math.max(s.scavengeMsMax, e.pauseMs);
      } else {
        s.markCompacts++;
        s.markCompactMsTotal = round2(s.markCompactMsTotal + e.pauseMs);
        s.markCompactMsMax = Math.max(s.markCompactMsMax, e.pauseMs);
      }
      if (e.reduce) s.memoryReducing++;
      s.allocatedBytes += e.allocated;
      if (e.pauseMs >= 1) pausesOver1Ms++;
    }
    return { isolates: [...byIsolate.values()], pausesOver1Ms };
  }
}

function round2(x: number): number {
  return Math.round(x * 100) / 100;
}
