/**
 * Cluster mode's state as every thread reads it without asking: whether this process is a node
 * of a cluster, whether its Redis is reachable, and how many nodes it sees alive. The primary
 * (src/cluster) is the only writer; a shard reads STATE once per `pub` (one Atomics.load) to
 * know whether the pub can also cross to the other nodes, and /health shows all of it.
 *
 * Layout: Int32Array [STATE, NODES_ALIVE].
 */
const STATE = 0;
const NODES_ALIVE = 1;
const SLOTS = 2;

export const ClusterStatus = {
  /** Not a cluster: one process on its LMDB store. */
  OFF: 0,
  /** Connecting to Redis for the first time. */
  CONNECTING: 1,
  UP: 2,
  /** Redis unreachable: local traffic only, what needs Redis is refused with E_CLUSTER_UNAVAILABLE. */
  DOWN: 3,
} as const;
export type ClusterStatusValue = (typeof ClusterStatus)[keyof typeof ClusterStatus];
const NAMES = ['off', 'connecting', 'up', 'down'] as const;

export function createClusterState(): SharedArrayBuffer {
  return new SharedArrayBuffer(SLOTS * Int32Array.BYTES_PER_ELEMENT);
}

export class ClusterState {
  private readonly slots: Int32Array;

  constructor(buffer: SharedArrayBuffer) {
    this.slots = new Int32Array(buffer);
  }

  get status(): ClusterStatusValue {
    return Atomics.load(this.slots, STATE) as ClusterStatusValue;
  }

  get clustered(): boolean {
    return this.status !== ClusterStatus.OFF;
  }

  /** Redis is reachable: pubs, sends, anys and acks can cross nodes. */
  get up(): boolean {
    return Atomics.load(this.slots, STATE) === ClusterStatus.UP;
  }

  set(status: ClusterStatusValue): void {
    Atomics.store(this.slots, STATE, status);
  }

  setNodesAlive(nodes: number): void {
    Atomics.store(this.slots, NODES_ALIVE, nodes);
  }

  /** What /health shows; null when not a cluster. */
  view(): { redis: (typeof NAMES)[number]; nodes_alive: number } | null {
    const status = this.status;
    if (status === ClusterStatus.OFF) return null;
    return { redis: NAMES[status], nodes_alive: Atomics.load(this.slots, NODES_ALIVE) };
  }
}
