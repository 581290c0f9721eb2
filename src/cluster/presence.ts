/**
 * Presence across nodes: who is connected where, per user and per group, kept in Redis with a
 * TTL so that a node that dies is forgotten (cluster.presence_ttl). This node's own view (which
 * of its connections are of which user, on which shard, in which groups) lives here too: it is
 * what the node writes to Redis, writes again after an outage, and routes local deliveries by.
 *
 *   P nodes        ZSET node -> last heartbeat (epoch ms), every presence_ttl / 3
 *   P nt           ZSET the same, of the nodes that take a delivery record's receive time
 *                  (channels.ts); trimmed by age, as nothing else forgets a node there
 *   P pu:USER      HASH node -> the user's connections on that node
 *   P pg:GROUP     HASH "node\nsid" -> "user\nweight": the group's member connections
 *   P pc:GROUP     HASH user -> its member connections in the group (presence-scripts.ts)
 *   P nk:NODE      SET of the pu:/pg: keys the node wrote to, and of its member connections
 *                  (for FORGET_NODE: presence-scripts.ts)
 *   P nf           SET of the nodes being forgotten (forget-node-script.ts)
 *
 * A reader counts only nodes whose heartbeat is younger than presence_ttl, so a dead node's
 * users vanish from every answer within presence_ttl; the first node to see it that old then
 * deletes its fields (FORGET_NODE, a chunk per call), so nothing of it stays behind, and its
 * users who have no member connection left elsewhere leave their groups (presence events,
 * presence-events.ts).
 * Group members are written by scripts only (JOIN, LEAVE, SYNC_GROUP, FORGET_NODE), which keep
 * pc:GROUP and tell the joins and leaves of users in the same atomic step.
 */
import type { ChainableCommander, Redis } from 'ioredis';
import { NAME_PATTERN } from '../protocol/frames.js';
import type { Keys } from './keys.js';
import { FORGET_CHUNK, FORGET_NODE } from './forget-node-script.js';
import { LEAVE, PRESENCE_ANSWER, SYNC_GROUP } from './presence-scripts.js';
import type { ScriptRunner } from './script-runner.js';
import { JOIN } from './scripts.js';

/** Most member connections one SYNC_GROUP writes or removes: a node's resync of a large group takes several scripts. */
const SYNC_CHUNK = 500;

export interface LocalConn {
  sid: string;
  user: string;
  shard: number;
  /** Token weight claim, else the configured one, else 1 (for `weighted`). */
  weight: number;
  groups: Set<string>;
  /** Groups whose presence events it asked for (null: none). */
  watching: Set<string> | null;
}

/** The connections of this node, by sid, by user and by group. */
export class LocalPresence {
  readonly bySid = new Map<string, LocalConn>();
  readonly byUser = new Map<string, Map<string, LocalConn>>();
  readonly byGroup = new Map<string, Set<string>>();

  online(conn: LocalConn): number {
    this.bySid.set(conn.sid, conn);
    let mine = this.byUser.get(conn.user);
    if (!mine) this.byUser.set(conn.user, (mine = new Map()));
    mine.set(conn.sid, conn);
    return mine.size;
  }

  /** The connection closed: returns it (with the groups it was in) and how many the user still has here. */
  offline(sid: string): { conn: LocalConn; left: number } | null {
    const conn = this.bySid.get(sid);
    if (!conn) return null;
    this.bySid.delete(sid);
    const mine = this.byUser.get(conn.user);
    mine?.delete(sid);
    if (mine && mine.size === 0) this.byUser.delete(conn.user);
    for (const group of conn.groups) this.leave(sid, group);
    return { conn, left: mine?.size ?? 0 };
  }

  /** True when this is the group's first member connection on this node. */
  join(sid: string, group: string): boolean {
    const conn = this.bySid.get(sid);
    if (!conn) return false;
    conn.groups.add(group);
    let members = this.byGroup.get(group);
    const first = !members;
    if (!members) this.byGroup.set(group, (members = new Set()));
    members.add(sid);
    return first;
  }

  /** True when that was the group's last member connection on this node. */
  leave(sid: string, group: string): boolean {
    this.bySid.get(sid)?.groups.delete(group);
    const members = this.byGroup.get(group);
    if (!members || !members.delete(sid)) return false;
    if (members.size > 0) return false;
    this.byGroup.delete(group);
    return true;
  }

  /** Shards holding connections of `user` here. */
  shardsOf(user: string): Set<number> {
    const shards = new Set<number>();
    for (const conn of this.byUser.get(user)?.values() ?? []) shards.add(conn.shard);
    return shards;
  }

  /** Every connection of a shard that died. */
  ofShard(shard: number): string[] {
    const sids: string[] = [];
    for (const conn of this.bySid.values()) if (conn.shard === shard) sids.push(conn.sid);
    return sids;
  }
}

export class ClusterPresence {
  private aliveNodes = new Set<string>();
  /** The nodes that took a delivery record's receive time at the last heartbeat. */
  private timedNodes = new Set<string>();
  /** The nodes that took a backlog as one record at the last heartbeat. */
  private batchNodes = new Set<string>();
  /** The forgets this node runs, by node: one at a time each (forgetNode). */
  private readonly forgetting = new Map<string, Promise<void>>();

  constructor(
    private readonly redis: Redis,
    private readonly scripts: ScriptRunner,
    private readonly keys: Keys,
    private readonly node: string,
    private readonly ttlMs: number,
  ) {
    this.aliveNodes.add(node);
  }

  /** Heartbeats younger than this are alive (the scripts take it as `aliveSince`). */
  aliveSince(now = Date.now()): number {
    return now - this.ttlMs;
  }

  /** The nodes alive at the last heartbeat (this one included). */
  get alive(): ReadonlySet<string> {
    return this.aliveNodes;
  }

  /** Whether a delivery record to `node` may carry its receive time (channels.ts): it said so at its last heartbeat this node read. */
  takesTime(node: string): boolean {
    return this.timedNodes.has(node);
  }

  /** Whether a user's backlog may go to `node` as DELIVER_USER_BATCH records (channels.ts): it said so at its last heartbeat this node read. */
  takesBatches(node: string): boolean {
    return this.batchNodes.has(node);
  }

  /**
   * This node is alive; learn which others are, and forget the dead. True: this node's own
   * heartbeat was gone, so another node took it for dead (it stalled longer than presence_ttl)
   * and forgot its members: the caller writes them again. Rejects while Redis is unreachable.
   */
  async heartbeat(): Promise<boolean> {
    const now = Date.now();
    const { keys } = this;
    const stale = `(${now - this.ttlMs}`;
    const [added, alive, dead, , , timed, , , batching, unfinished] = (await this.redis
      .multi()
      .zadd(keys.nodes, now, this.node)
      .zrangebyscore(keys.nodes, now - this.ttlMs, '+inf')
      .zrangebyscore(keys.nodes, '-inf', stale)
      // What this node's decoder takes, for the others to read (channels.ts): one sorted set per record feature.
      .zadd(keys.timedNodes, now, this.node)
      .zremrangebyscore(keys.timedNodes, '-inf', stale)
      .zrangebyscore(keys.timedNodes, now - this.ttlMs, '+inf')
      .zadd(keys.batchNodes, now, this.node)
      .zremrangebyscore(keys.batchNodes, '-inf', stale)
      .zrangebyscore(keys.batchNodes, now - this.ttlMs, '+inf')
      .smembers(keys.forgetting)
      .exec())!.map(([err, value]) => {
      if (err) throw err;
      return value;
    }) as [number, string[], string[], number, number, string[], number, number, string[], string[]];
    this.aliveNodes = new Set(alive);
    this.aliveNodes.add(this.node);
    this.timedNodes = new Set(timed);
    this.batchNodes = new Set(batching);
    // In the background, a chunk per script: a node with many members takes many calls, and the
    // heartbeat (and the resync waiting on it) need not wait for them. A forget left unfinished
    // (P nf) is taken up again here, whoever started it; one that fails is, at the next heartbeat.
    for (const node of new Set([...dead, ...unfinished])) {
      if (node !== this.node) this.forgetNode(node, now - this.ttlMs).catch(() => {});
    }
    return added === 1;
  }

  /**
   * Forgets \`node\` (FORGET_NODE), calling again while it says there is more; one run per node
   * at a time on this node (another node may run its own: each call takes its own entries).
   * \`staleBefore\`: the node is left alone if it beat since then (a node forgetting itself gives none).
   */
  forgetNode(node: string, staleBefore?: number): Promise<void> {
    let running = this.forgetting.get(node);
    if (!running) {
      const args: Array<string | number> = [this.keys.prefix, node, FORGET_CHUNK];
      if (staleBefore !== undefined) args.push(staleBefore);
      running = (async () => {
        while ((await this.scripts.run(FORGET_NODE, args)) === 'more');
      })().finally(() => this.forgetting.delete(node));
      this.forgetting.set(node, running);
    }
    return running;
  }

  /**
   * Writes this node's whole presence again, after an outage: others may have forgotten it
   * meanwhile, and its members changed while nothing could be written. Each group is set to
   * what the node has now (SYNC_GROUP, a chunk per script, additions first), so the watchers
   * hear only what changed, not every user leaving and coming back. What to remove is what the
   * node's key list names and it no longer has: no group is read, and no script takes more than
   * SYNC_CHUNK member connections.
   */
  async rewrite(local: LocalPresence, snapshot: () => void = () => {}): Promise<void> {
    const { keys, node } = this;
    // Loaded first (a Redis restart empties its cache): a script that met NOSCRIPT would be
    // sent again after the commands behind it: a leave must not fall behind a later read, nor
    // one connection's join behind another's leave (the user would leave and come back).
    await this.scripts.load([JOIN, LEAVE, SYNC_GROUP, FORGET_NODE, PRESENCE_ANSWER]);
    const written = await this.keyList();
    // From here on what is written is `local` as it is now, so what changes after must be
    // written after (the caller's `snapshot`), on this connection, behind these writes.
    snapshot();
    const syncs: Array<Promise<unknown>> = [this.redis.zadd(keys.nodes, Date.now(), node)];
    // Each user's two writes in one MULTI, at most SYNC_CHUNK users a MULTI: one EXEC of 100,000 users held Redis 0.8 s.
    let batch = this.redis.multi();
    let users = 0;
    const add = (write: (multi: ChainableCommander) => void): void => {
      write(batch);
      if (++users < SYNC_CHUNK) return;
      syncs.push(batch.exec());
      batch = this.redis.multi();
      users = 0;
    };
    const userPrefix = keys.userPresence('');
    for (const key of written) {
      if (key.startsWith(userPrefix) && !local.byUser.has(key.slice(userPrefix.length))) add((multi) => multi.hdel(key, node).srem(keys.nodeKeys(node), key));
    }
    for (const [user, conns] of local.byUser) add((multi) => multi.hset(keys.userPresence(user), node, conns.size).sadd(keys.nodeKeys(node), keys.userPresence(user)));
    if (users > 0) syncs.push(batch.exec());
    // The groups it wrote to are listed as "P pg:GROUP", and each member connection as "P pg:GROUP\nSID".
    const groupPrefix = keys.groupPresencePrefix;
    const stale = new Map<string, string[]>();
    for (const key of written) {
      if (!key.startsWith(groupPrefix)) continue;
      const end = key.indexOf('\n', groupPrefix.length);
      const group = key.slice(groupPrefix.length, end < 0 ? undefined : end);
      let gone = stale.get(group);
      if (!gone) stale.set(group, (gone = []));
      if (end >= 0 && !local.byGroup.get(group)?.has(key.slice(end + 1))) gone.push(key.slice(end + 1));
    }
    const sync = (group: string, last: boolean, adds: Array<string | number>, removes: string[]): void => {
      syncs.push(this.scripts.run(SYNC_GROUP, [keys.prefix, node, group, last ? 1 : 0, adds.length / 3, ...adds, ...removes]));
    };
    for (const [group, sids] of local.byGroup) {
      let adds: Array<string | number> = [];
      for (const sid of sids) {
        const conn = local.bySid.get(sid);
        if (conn) adds.push(sid, conn.user, conn.weight);
        if (adds.length === 3 * SYNC_CHUNK) {
          sync(group, false, adds, []);
          adds = [];
        }
      }
      if (adds.length > 0) sync(group, false, adds, []);
    }
    for (const [group, gone] of stale) {
      const last = !local.byGroup.has(group);
      if (!last && gone.length === 0) continue;
      for (let i = 0; i < gone.length || i === 0; i += SYNC_CHUNK) {
        sync(group, last && i + SYNC_CHUNK >= gone.length, [], gone.slice(i, i + SYNC_CHUNK));
      }
    }
    await Promise.all(syncs);
  }

  /** Everything this node's key list (P nk:NODE) names, read a bounded chunk per command. */
  private async keyList(): Promise<Set<string>> {
    const key = this.keys.nodeKeys(this.node);
    const listed = new Set<string>();
    let cursor = '0';
    do {
      const [next, entries] = await this.redis.sscan(key, cursor, 'COUNT', 1000);
      for (const entry of entries) listed.add(entry);
      cursor = next;
    } while (cursor !== '0');
    return listed;
  }

  /** `user` has `connections` on this node (0: none). */
  async userCount(user: string, connections: number): Promise<void> {
    const { keys, node } = this;
    if (connections > 0) {
      // Listed in the node's keys too, as CONNECT lists it: a CONNECT that failed before its
      // write leaves this the only record, which forgetting the node must find.
      await Promise.all([this.redis.hset(keys.userPresence(user), node, connections), this.redis.sadd(keys.nodeKeys(node), keys.userPresence(user))]);
      return;
    }
    // Two plain commands, not a MULTI: with auto-pipelining a MULTI goes out at once, ahead of
    // commands queued before it, and this HDEL ran before the CONNECT of a connection that had
    // just opened (and closed), which then wrote the user back online for good.
    await Promise.all([this.redis.hdel(keys.userPresence(user), node), this.redis.srem(keys.nodeKeys(node), keys.userPresence(user))]);
  }

  /** Connection `sid` left `group`; `last`: it was the group's last member on this node. */
  async left(group: string, sid: string, last: boolean): Promise<void> {
    await this.scripts.run(LEAVE, [this.keys.prefix, this.node, sid, group, last ? 1 : 0]);
  }

  /**
   * Forgets this node (it stops, or starts its drain): its users leave their groups at once, a
   * chunk at a time; left midway (the stop's farewell is short), another node finishes it.
   */
  leaveCluster(): Promise<void> {
    // A forget of itself already under way may have read its key list before the latest writes:
    // this one runs after it.
    const running = this.forgetting.get(this.node);
    return running ? running.then(() => this.forgetNode(this.node)) : this.forgetNode(this.node);
  }

  // --- readers -----------------------------------------------------------------------------

  /** The users online in `group` across the live nodes, with their member connections. */
  async group(group: string): Promise<Map<string, number>> {
    const [raw, alive] = await this.read(this.keys.groupPresence(checkName(group)));
    const users = new Map<string, number>();
    for (const [field, value] of raw) {
      if (!alive.has(field.slice(0, field.indexOf('\n')))) continue;
      const user = value.slice(0, value.indexOf('\n'));
      users.set(user, (users.get(user) ?? 0) + 1);
    }
    return users;
  }

  /**
   * A \`presence\` op's answer (PRESENCE_ANSWER): the users of \`group\` with their member
   * connections when it has at most \`maxList\` users and \`counts\` is false, else only how many
   * users and connections it has (read without reading its members).
   */
  async answer(group: string, maxList: number, counts: boolean): Promise<{ users: Map<string, number> | null; userCount: number; conns: number }> {
    const out = (await this.scripts.run(PRESENCE_ANSWER, [this.keys.prefix, checkName(group), maxList, counts ? 1 : 0, this.aliveSince()])) as Array<string | number>;
    if (out[0] !== -1) return { users: null, userCount: Number(out[0]), conns: Number(out[1]) };
    const users = new Map<string, number>();
    let conns = 0;
    for (let i = 2; i + 1 < out.length; i += 2) {
      users.set(String(out[i]), Number(out[i + 1]));
      conns += Number(out[i + 1]);
    }
    return { users, userCount: users.size, conns };
  }

  /** The connections of `user` across the live nodes, per node. */
  async user(user: string): Promise<Map<string, number>> {
    const [raw, alive] = await this.read(this.keys.userPresence(checkName(user)));
    const nodes = new Map<string, number>();
    for (const [node, count] of raw) if (alive.has(node) && Number(count) > 0) nodes.set(node, Number(count));
    return nodes;
  }

  /** A presence hash (as pairs: field names are node ids, never user input) and the nodes alive right now. */
  private async read(key: string): Promise<[Array<[string, string]>, Set<string>]> {
    const [[hashErr, flat], [nodesErr, alive]] = (await this.redis
      .multi()
      .call('HGETALL', key)
      .zrangebyscore(this.keys.nodes, Date.now() - this.ttlMs, '+inf')
      .exec()) as [[Error | null, string[]], [Error | null, string[]]];
    if (hashErr) throw hashErr;
    if (nodesErr) throw nodesErr;
    const pairs: Array<[string, string]> = [];
    for (let i = 0; i + 1 < flat.length; i += 2) pairs.push([flat[i]!, flat[i + 1]!]);
    return [pairs, new Set(alive)];
  }
}

function checkName(name: string): string {
  if (typeof name !== 'string' || !NAME_PATTERN.test(name)) throw new TypeError(`must match ${NAME_PATTERN.source}`);
  return name;
}
