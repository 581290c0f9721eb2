/**
 * Every Redis key and channel of a cluster, in one place (docs/messaging.md, "Cluster mode"
 * lists them with what they hold). All start with `cluster.key_prefix`, so clusters (or test
 * runs) sharing one Redis never see each other's. User ids and group names are NAME_PATTERN:
 * no spaces, no newlines, so they are used in names as they are.
 */
export class Keys {
  constructor(readonly prefix: string) {}

  // --- channels ------------------------------------------------------------------------
  /** Pubs to `group`, from any node: payload [origin length u8][origin node id][msg frame]; and its presence records ([0xff]...). */
  groupChannel(group: string): string {
    return `${this.prefix}g:${group}`;
  }

  /** Records for one node: deliveries to its connections (node-link.ts). */
  nodeChannel(node: string): string {
    return `${this.prefix}n:${node}`;
  }

  get groupChannelPrefix(): string {
    return `${this.prefix}g:`;
  }

  // --- nodes and presence (presence.ts) --------------------------------------------------
  /** ZSET node id -> its last heartbeat (epoch ms). */
  get nodes(): string {
    return `${this.prefix}nodes`;
  }

  /**
   * ZSET node id -> its last heartbeat, of the nodes that take a delivery record's receive time
   * (channels.ts): an older version's node is not in it, and gets records without it.
   */
  get timedNodes(): string {
    return `${this.prefix}nt`;
  }

  /**
   * ZSET node id -> its last heartbeat, of the nodes that take a user's backlog as one record
   * (channels.ts, DELIVER_USER_BATCH): an older version's node gets one record per message.
   */
  get batchNodes(): string {
    return `${this.prefix}nb`;
  }

  /** HASH node id -> connections of `user` on that node. */
  userPresence(user: string): string {
    return `${this.prefix}pu:${user}`;
  }

  /** HASH "node\nsid" -> "user\nweight": the member connections of `group`. */
  groupPresence(group: string): string {
    return `${this.prefix}pg:${group}`;
  }

  get groupPresencePrefix(): string {
    return `${this.prefix}pg:`;
  }

  /** SET of the presence keys a node wrote to, so that another node can clean up after it. */
  nodeKeys(node: string): string {
    return `${this.prefix}nk:${node}`;
  }

  /** SET of the nodes being forgotten, a chunk at a time (forget-node-script.ts). */
  get forgetting(): string {
    return `${this.prefix}nf`;
  }

  // --- the durable store (store.ts, scripts.ts) -------------------------------------------
  /** The prefix the Lua scripts build per-message keys from (m:ID, q:TARGET, d:ID, snd:FROM). */
  get storePrefix(): string {
    return this.prefix;
  }
}
