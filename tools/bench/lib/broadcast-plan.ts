// What the broadcast load is, as plain arithmetic: who joins which group, who publishes, when
// each publication is due, and which of them fall in the measured window. No sockets here, so
// the accounting (expected deliveries) can be read and checked on its own.

export interface BroadcastOptions {
  connections: number;
  groups: number;
  publishers: number;
  /** Total publications per second, over all publishers. */
  rate: number;
  durationS: number;
  warmupS: number;
}

export interface BroadcastPlan extends BroadcastOptions {
  /** Milliseconds between two consecutive publications (any publisher). */
  intervalMs: number;
  /** Publications in warm-up plus window; publication k is due at k * intervalMs. */
  totalPubs: number;
  /** Index of the first publication in the measured window. */
  firstMeasured: number;
  /** Upper bound on any publisher's sequence number, for sizing the duplicate bitsets. */
  seqLimit: number;
  /** Members per group; connection c joins group c % groups. */
  groupSize: number[];
  /** The connection index that publishes as publisher p. */
  publisherConnection: number[];
  /** The group publisher p publishes to. */
  publisherGroup: number[];
  /** Position of publisher p among the publishers of its group (its slot in a receiver's bitset). */
  publisherSlot: number[];
  /** How many publishers publish to group g. */
  publishersInGroup: number[];
  /** Deliveries the window must produce: measured publications x members of their group. */
  expectedDeliveries: number;
  /** Measured publications per publisher. */
  measuredPubsByPublisher: number[];
}

export function groupOf(connection: number, groups: number): number {
  return connection % groups;
}

/**
 * Publication k is sent by publisher k % publishers with sequence number floor(k / publishers):
 * publishers take turns, so the total rate is spread evenly over time and over publishers.
 */
export function publisherOf(k: number, publishers: number): number {
  return k % publishers;
}

export function seqOf(k: number, publishers: number): number {
  return Math.floor(k / publishers);
}

export function isMeasured(plan: BroadcastPlan, publisher: number, seq: number): boolean {
  const k = seq * plan.publishers + publisher;
  return k >= plan.firstMeasured && k < plan.totalPubs;
}

export function makePlan(options: BroadcastOptions): BroadcastPlan {
  const { connections, groups, publishers, rate, durationS, warmupS } = options;
  if (groups > connections) throw new Error(`--groups (${groups}) must not exceed --connections (${connections})`);
  if (publishers > connections) throw new Error(`--publishers (${publishers}) must not exceed --connections (${connections})`);

  const groupSize = new Array<number>(groups).fill(0);
  for (let c = 0; c < connections; c++) groupSize[groupOf(c, groups)]!++;

  // Publisher p publishes to group p % groups as that group's (p / groups)-th member, i.e.
  // connection g + member * groups; with publishers <= connections that member exists.
  const publisherConnection: number[] = [];
  const publisherGroup: number[] = [];
  const publisherSlot: number[] = [];
  const publishersInGroup = new Array<number>(groups).fill(0);
  for (let p = 0; p < publishers; p++) {
    const g = p % groups;
    const member = Math.floor(p / groups);
    publisherConnection.push(g + member * groups);
    publisherGroup.push(g);
    publisherSlot.push(publishersInGroup[g]!++);
  }

  const totalPubs = Math.round(rate * (warmupS + durationS));
  const firstMeasured = Math.round(rate * warmupS);
  const measuredPubsByPublisher = new Array<number>(publishers).fill(0);
  for (let k = firstMeasured; k < totalPubs; k++) measuredPubsByPublisher[publisherOf(k, publishers)]!++;
  let expectedDeliveries = 0;
  for (let p = 0; p < publishers; p++) {
    expectedDeliveries += measuredPubsByPublisher[p]! * groupSize[publisherGroup[p]!]!;
  }

  return {
    ...options,
    intervalMs: 1000 / rate,
    totalPubs,
    firstMeasured,
    seqLimit: Math.ceil(totalPubs / publishers),
    groupSize,
    publisherConnection,
    publisherGroup,
    publisherSlot,
    publishersInGroup,
    expectedDeliveries,
    measuredPubsByPublisher,
  };
}
