/**
 * The reconnect scenario's check: every user receives each message of its group exactly once
 * and in order, across its reconnections. Its group keeps history, so every `msg` carries the
 * group's `offset` (consecutive) and `epoch`: per user, the next message must carry the last
 * offset + 1. A dropped user comes back with `join` `since` {last offset, epoch}: the server
 * replays what it missed before `joined` (`recovered: true`, whose offset must be the last one
 * replayed), and the live messages go on from there.
 */

export interface RecoveryCounters {
  /** Connections the scenario dropped (TCP cut, no close handshake). */
  drops: number;
  /** Joins with `since` after a drop. */
  rejoins: number;
  /** ... answered `recovered: true` / `false` (false: the client would reload). */
  recovered: number;
  notRecovered: number;
  /** Messages replayed before a `joined` (not in the latency figures: they waited while their user was away). */
  replayed: number;
  /** Messages whose offset followed the user's last one. */
  inOrder: number;
  /** Offsets skipped: messages the user never received (after a `recovered: false`, counted apart: not a defect). */
  gaps: number;
  /** Messages at or below the user's last offset: received twice, or out of order. */
  duplicates: number;
  /** A `msg` or `joined` whose epoch differs from the one the user held (the server lost its history). */
  epochChanges: number;
  /** `joined` with `recovered: true` whose offset is not the last one the user holds after the replay. */
  mismatches: number;
}

export function noRecovery(): RecoveryCounters {
  return { drops: 0, rejoins: 0, recovered: 0, notRecovered: 0, replayed: 0, inOrder: 0, gaps: 0, duplicates: 0, epochChanges: 0, mismatches: 0 };
}

/** Order violations: what makes the reconnect scenario fail (gaps after a recovery that said true, duplicates, mismatches). */
export function orderViolations(r: RecoveryCounters): number {
  return r.gaps + r.duplicates + r.mismatches;
}

/** Where one user stands in its group: the last offset received (-1: none yet) and its epoch. */
export interface OrderState {
  lastOffset: number;
  epoch: string;
}

export function newOrderState(): OrderState {
  return { lastOffset: -1, epoch: '' };
}

/** The `since` to join with: where the user stands, or undefined before its first `joined`. */
export function sinceOf(state: OrderState): { offset: number; epoch: string } | undefined {
  return state.lastOffset < 0 ? undefined : { offset: state.lastOffset, epoch: state.epoch };
}

/** A `msg` of the user's group. */
export function checkMsg(state: OrderState, offset: unknown, epoch: unknown, counters: RecoveryCounters): void {
  if (typeof offset !== 'number' || typeof epoch !== 'string') return;
  if (state.lastOffset < 0 || epoch !== state.epoch) {
    if (state.lastOffset >= 0) counters.epochChanges++;
  } else if (offset === state.lastOffset + 1) {
    counters.inOrder++;
  } else if (offset <= state.lastOffset) {
    counters.duplicates++;
    return;
  } else {
    counters.gaps += offset - state.lastOffset - 1;
  }
  state.lastOffset = offset;
  state.epoch = epoch;
}

/**
 * `joined` of the user's group (`offset` and `epoch` present: it keeps history). `recovering`:
 * the join carried `since`. After `recovered: false` the user starts over from the top (what it
 * missed is not counted as gaps: the server said so, a client reloads).
 */
export function checkJoined(state: OrderState, joined: Record<string, unknown>, recovering: boolean, counters: RecoveryCounters): void {
  const { offset, epoch, recovered } = joined;
  if (typeof offset !== 'number' || typeof epoch !== 'string') return;
  if (recovering) {
    if (recovered === true) {
      counters.recovered++;
      if (offset !== state.lastOffset || epoch !== state.epoch) counters.mismatches++;
    } else {
      counters.notRecovered++;
    }
  } else if (state.lastOffset >= 0 && epoch !== state.epoch) {
    counters.epochChanges++;
  }
  if (!recovering || recovered !== true || state.lastOffset < 0) {
    state.lastOffset = offset;
    state.epoch = epoch;
  }
}
