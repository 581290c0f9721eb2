/**
 * What a loadgen thread hands to the main thread at the end: its merged-ready histograms,
 * its counters and, per slot, the exact logs delivery.ts needs (what each publisher sent and
 * got acknowledged, what each receiver saw and when it was a member, what each `send` was).
 */
import type { ConnectionPool } from './connection-pool.js';
import type { Measurements } from './measurements.js';
import type { Slot } from './slots.js';
import type { WorkerResult } from './types.js';

const TRANSPORT = 'tools/wsclient (raw-socket client)';

export function collectWorkerResult(m: Measurements, pool: ConnectionPool, elu: number, priority: string): WorkerResult {
  const slots = pool.slots;
  return {
    histograms: m.encodeAll(),
    counters: m.counters,
    elu,
    peakActive: pool.peakActive,
    transport: TRANSPORT,
    priority,
    delivery: {
      pubs: slots
        .filter((st) => st.pubDue.length > 0)
        .map((st) => ({ slot: st.slot, group: st.group, dueUs: st.pubDue.toArray(), sentUs: st.pubSent.toArray(), ackUs: st.pubAck.toArray() })),
      receivers: slots
        .filter((st) => st.intervals.length > 0)
        .map((st) => ({
          slot: st.slot,
          group: st.group,
          intervals: st.intervals,
          connectedAtEnd: !wasDropped(st, m.endUs),
          pubSeen: [...st.pubSeen].map(([from, set]) => ({ from, bits: set.bits })),
          sendSeen: [...st.sendSeen].map(([from, set]) => ({ from, bits: set.bits })),
        })),
      sends: slots
        .filter((st) => st.sendDue.length > 0)
        .map((st) => ({ slot: st.slot, to: Int32Array.from(st.sendTo_.toArray()), dueUs: st.sendDue.toArray(), ackUs: st.sendAck.toArray() })),
    },
  };
}

/** A slot whose last connection ended before the final close (dropped, or a retired spike slot). */
function wasDropped(st: Slot, measureEndUs: number): boolean {
  const end = st.intervals[st.intervals.length - 1]!;
  return !(end >= measureEndUs);
}
