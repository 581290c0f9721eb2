/**
 * Cluster mode on real processes: three nodes (`node dist/src/main.js`) on three ports, one
 * private redis-server, clients on each node. Every kind of message crosses nodes with no loss
 * and no duplicate; presence is shared; a dead node is forgotten.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Packr } from 'msgpackr';
import { encodeStoredMsg } from '../src/protocol/json-codec.js';
import { getJson, member, type Frame, type TestClient } from './helpers/client.js';
import { until, untilTrue } from './helpers/messaging.js';
import { scrape, total, untilMetricIs } from './helpers/prometheus.js';
import { announceSkip, nodeConfig, startPrivateRedis, type PrivateRedis } from './helpers/redis.js';
import { startProcess, type ServerProcess } from './helpers/server.js';

const skip = announceSkip('cluster.test');
type Member = TestClient & { welcome: Frame };

/**
 * A metric's total once the earlier tests' events are in it: the threads report once per
 * metrics_collection_interval (1 s), so it is taken when it stays the same past one.
 */
const settledTotal = async (port: number, name: string): Promise<number> => {
  for (let last = NaN; ; await new Promise((r) => setTimeout(r, 1100))) {
    const count = total(await scrape(port), name);
    if (count === last) return count;
    last = count;
  }
};

const quiet = async (client: TestClient): Promise<void> => {
  client.send({ op: 'ping', t: 0 });
  await client.next((f) => f.op === 'pong');
};

describe('three nodes on one Redis', { skip }, () => {
  let redis: PrivateRedis;
  const nodes: ServerProcess[] = [];
  const open: TestClient[] = [];
  const on = async (node: number, user: string, groups: string[] = []): Promise<Member> => {
    const client = await member(nodes[node]!.port, user, groups);
    open.push(client);
    return client;
  };

  before(async () => {
    redis = await startPrivateRedis();
    for (let i = 0; i < 3; i++) nodes.push(await startProcess(nodeConfig(redis.url, 'ocs:', i === 0 ? 2 : 1)));
  });
  after(async () => {
    for (const client of open) client.close();
    await Promise.all(nodes.map((node) => node.stop()));
    await redis?.stop();
  });

  test('/health shows the node in the cluster, Redis up and the nodes it sees', async () => {
    // Each node sees the others once their first heartbeats are in.
    for (let i = 0; i < 100; i++) {
      const { body } = await getJson(nodes[0]!.port, '/health');
      if ((body.cluster as { nodes_alive: number }).nodes_alive === 3) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    const { status, body } = await getJson(nodes[0]!.port, '/health');
    assert.equal(status, 200);
    assert.equal(body.status, 'ok');
    assert.deepEqual(body.cluster, { redis: 'up', nodes_alive: 3 });
  });

  test('a pub reaches every member on every node once, in publish order per publisher', async () => {
    const members = [await on(0, 'pa', ['room']), await on(1, 'pb', ['room']), await on(2, 'pc', ['room']), await on(0, 'pd', ['room'])];
    const publisher = await on(1, 'pub', ['room']);
    const outsider = await on(2, 'out', ['elsewhere']);
    for (let i = 0; i < 200; i++) publisher.send({ op: 'pub', group: 'room', data: { i }, ...(i === 199 ? { ref: 'last' } : {}) });
    await publisher.next((f) => f.op === 'ack' && f.ref === 'last');
    for (const client of [...members, publisher]) {
      const seen: number[] = [];
      while (seen.length < 200) seen.push(((await client.next((f) => f.op === 'msg')).data as { i: number }).i);
      assert.deepEqual(seen, Array.from({ length: 200 }, (_, i) => i));
      await quiet(client);
      assert.equal(client.frames.filter((f) => f.op === 'msg').length, 0, 'no duplicate');
    }
    await quiet(outsider);
    assert.equal(outsider.frames.filter((f) => f.op === 'msg').length, 0);
    // By interest: each node subscribes to the groups it has members of, and to no other.
    const numsub = (await redis.client().pubsub('NUMSUB', 'ocs:g:room', 'ocs:g:elsewhere', 'ocs:g:nobody')) as Array<string | number>;
    assert.deepEqual(numsub.map(String), ['ocs:g:room', '3', 'ocs:g:elsewhere', '1', 'ocs:g:nobody', '0']);
  });

  test('pubs and sends from another node reach msgpack members as binary frames, JSON members as text', async () => {
    const binary = async (node: number, user: string, groups: string[]): Promise<Member> => {
      const client = await member(nodes[node]!.port, user, groups, { encoding: 'msgpack' });
      open.push(client);
      return client;
    };
    // Node 0 runs two shards: a msgpack member and a JSON member on it as well.
    const mp = [await binary(0, 'mp0', ['mixed']), await binary(1, 'mp1', ['mixed']), await binary(2, 'mp2', ['mixed'])];
    const json = [await on(0, 'js0', ['mixed']), await on(1, 'js1', ['mixed']), await on(2, 'js2', ['mixed'])];
    const arrivalOf = (client: Member, id: unknown) => client.arrivals.find((a) => a.op === 'msg' && a.id === id);
    // A JSON publisher on node 2, then a msgpack one on node 1: each member gets both, in its own encoding.
    json[2]!.send({ op: 'pub', group: 'mixed', data: { from: 'json' }, ref: 'j' });
    const fromJson = (await json[2]!.next((f) => f.op === 'ack' && f.ref === 'j')).id;
    mp[1]!.send({ op: 'pub', group: 'mixed', data: { from: 'msgpack' }, ref: 'm' });
    const fromMsgpack = (await mp[1]!.next((f) => f.op === 'ack' && f.ref === 'm')).id;
    for (const [clients, isBinary] of [[mp, true], [json, false]] as const) {
      for (const client of clients) {
        assert.deepEqual((await client.next((f) => f.op === 'msg' && f.id === fromJson)).data, { from: 'json' });
        assert.deepEqual((await client.next((f) => f.op === 'msg' && f.id === fromMsgpack)).data, { from: 'msgpack' });
        assert.equal(arrivalOf(client, fromJson)?.binary, isBinary);
        assert.equal(arrivalOf(client, fromMsgpack)?.binary, isBinary);
      }
    }
    // A stored message from another node, to a msgpack user: binary too.
    json[0]!.send({ op: 'send', to: 'mp2', data: { direct: true }, ref: 's' });
    await json[0]!.next((f) => f.op === 'ack' && f.ref === 's');
    const direct = await mp[2]!.next((f) => f.op === 'msg' && f.ackReq === true);
    assert.deepEqual(direct.data, { direct: true });
    assert.equal(arrivalOf(mp[2]!, direct.id)?.binary, true);
    mp[2]!.send({ op: 'ack', id: direct.id });
  });

  test('a member that got `joined` on a node hears the very next pub from another node', async () => {
    const publisher = await on(0, 'jp', []);
    for (let round = 0; round < 10; round++) {
      const listener = await on(1 + (round % 2), `jl${round}`, [`fresh-${round}`]);
      publisher.send({ op: 'pub', group: `fresh-${round}`, data: { round } });
      assert.deepEqual((await listener.next((f) => f.op === 'msg', 3000)).data, { round });
    }
  });

  test('a send reaches every connection of the user on every node; one ack settles it', async () => {
    const first = await on(0, 'multi');
    const second = await on(2, 'multi');
    const sender = await on(1, 'sender');
    sender.send({ op: 'send', to: 'multi', data: { text: 'hi' }, ref: 's1' });
    const ack = await sender.next((f) => f.op === 'ack' && f.ref === 's1');
    const a = await first.next((f) => f.op === 'msg');
    const b = await second.next((f) => f.op === 'msg');
    assert.equal(a.id, ack.id);
    assert.equal(b.id, ack.id);
    assert.equal(a.ackReq, true);
    first.send({ op: 'ack', id: a.id });
    // Past the ack timeout (1 s) and a sweep: acknowledged, so never delivered again.
    await new Promise((r) => setTimeout(r, 1500));
    for (const client of [first, second]) {
      await quiet(client);
      assert.equal(client.frames.filter((f) => f.op === 'msg').length, 0);
    }
  });

  test('the commit, send and ack latencies of stored messages are measured on the nodes, once per message', async () => {
    const sender = await on(1, 'timed-sender');
    const near = await on(1, 'timed-near');
    const far = await on(2, 'timed-far', ['timed-workers']);
    const before = (node: number, name: string): Promise<number> => settledTotal(nodes[node]!.port, name);
    const [commits, sendsNear, sendsFar, acksNear, acksFar] = await Promise.all([
      before(1, 'ocs_commit_latency_seconds_count'),
      before(1, 'ocs_send_latency_seconds_count'),
      before(2, 'ocs_send_latency_seconds_count'),
      before(1, 'ocs_ack_latency_seconds_count'),
      before(2, 'ocs_ack_latency_seconds_count'),
    ]);
    for (const to of ['timed-near', 'timed-far']) sender.send({ op: 'send', to, data: 'timed', ref: to });
    sender.send({ op: 'any', group: 'timed-workers', data: 'timed any', ref: 'any' });
    for (const [client, data] of [[near, 'timed'], [far, 'timed'], [far, 'timed any']] as const) {
      const msg = await client.next((f) => f.op === 'msg' && f.data === data);
      client.send({ op: 'ack', id: msg.id });
    }
    await untilMetricIs(nodes[1]!.port, 'ocs_commit_latency_seconds_count', commits + 3);
    // Timed by the recipient's shard, on the sender's node or, from the receive time the delivery record carries, on another.
    await untilMetricIs(nodes[1]!.port, 'ocs_send_latency_seconds_count', sendsNear + 1);
    await untilMetricIs(nodes[2]!.port, 'ocs_send_latency_seconds_count', sendsFar + 2);
    await untilMetricIs(nodes[1]!.port, 'ocs_ack_latency_seconds_count', acksNear + 1);
    await untilMetricIs(nodes[2]!.port, 'ocs_ack_latency_seconds_count', acksFar + 2);
  });

  test('delivery records across versions: a node takes them with or without the receive time, and sends it and the ack deadline only to nodes that take them', async () => {
    const packr = new Packr({ useRecords: false, moreTypes: false });
    const client = redis.client();
    // Records from an older node (four elements) and from a later one (a further element) are delivered; only a timed one is timed.
    const recipient = await on(2, 'rec-reader');
    const [node2] = await client.hkeys('ocs:pu:rec-reader');
    const sends = await settledTotal(nodes[2]!.port, 'ocs_send_latency_seconds_count');
    const records = [[1, 'rec-reader', 'rec-1'], [1, 'rec-reader', 'rec-2', Date.now() - 5], [1, 'rec-reader', 'rec-3', Date.now() - 5, 'later']] as const;
    for (const [kind, user, id, ...rest] of records) {
      await client.publish(`ocs:n:${node2}`, packr.pack([kind, user, id, encodeStoredMsg(id, 'elsewhere', null, `"${id}"`, 1, Date.now()), ...rest]));
    }
    for (const [, , id] of records) assert.equal((await recipient.next((f) => f.op === 'msg')).id, id);
    await untilMetricIs(nodes[2]!.port, 'ocs_send_latency_seconds_count', sends + 2);
    // A node of an older version, faked: alive, with a user; its decoder takes exactly four elements (msgpackr refuses trailing bytes).
    const old = 'old0000000node';
    const listener = redis.client();
    const heard: unknown[][] = [];
    listener.on('messageBuffer', (_channel: Buffer, message: Buffer) => heard.push(packr.unpack(message) as unknown[]));
    await listener.subscribe(`ocs:n:${old}`);
    await client.multi().zadd('ocs:nodes', Date.now(), old).hset('ocs:pu:old-user', old, 1).exec();
    const sender = await on(0, 'rec-sender');
    const sendTo = async (ref: string): Promise<unknown[]> => {
      await client.zadd('ocs:nodes', Date.now(), old);
      sender.send({ op: 'send', to: 'old-user', data: ref, ref });
      const { id } = await sender.next((f) => f.op === 'ack' && f.ref === ref);
      return until(() => heard.find((record) => record[2] === id), `the record of ${ref}`);
    };
    assert.equal((await sendTo('before')).length, 4, 'a node that never said it takes the receive time gets four elements');
    // Once it says so (as a node of this version does with each heartbeat), and the sender's next heartbeat has read it:
    // six, the receive time and the ack deadline.
    await client.zadd('ocs:nt', Date.now(), old);
    await untilTrue('a record with the receive time', async () => {
      await client.zadd('ocs:nt', Date.now(), old);
      const record = await sendTo(`after-${Date.now()}`);
      const [receivedAt, deadline] = record.slice(4) as number[];
      return record.length === 6 && Math.abs(receivedAt! - Date.now()) < 5000 && deadline! > receivedAt! && deadline! < Date.now() + 60_000;
    });
    await client.multi().zrem('ocs:nodes', old).zrem('ocs:nt', old).del('ocs:pu:old-user').exec();
  });

  test("a backlog goes to the user's connections on other nodes as one record per node, and one per message to a node that takes no batches", async () => {
    const packr = new Packr({ useRecords: false, moreTypes: false });
    const client = redis.client();
    // Two nodes, faked: alive, each with a connection of the user; one says it takes batch records (`P nb`), one does not.
    const batching = 'batch00000node';
    const plain = 'plain00000node';
    const heard = new Map<string, unknown[][]>([
      [batching, []],
      [plain, []],
    ]);
    const listener = redis.client();
    listener.on('messageBuffer', (channel: Buffer, message: Buffer) => heard.get(channel.toString().slice('ocs:n:'.length))?.push(packr.unpack(message) as unknown[]));
    await listener.subscribe(`ocs:n:${batching}`, `ocs:n:${plain}`);
    const sender = await on(0, 'share-sender');
    let attempt = 0;
    // The claiming node reads `P nb` at its heartbeat (every second here): a fresh user per attempt until it has.
    await untilTrue('one batch record for the node that takes them', async () => {
      const user = `share-${attempt++}`;
      for (const node of heard.values()) node.length = 0;
      const ids: string[] = [];
      for (let i = 0; i < 5; i++) {
        sender.send({ op: 'send', to: user, data: { i }, ref: `${user}-${i}`, pri: i === 4 ? 3 : 1 });
        ids.push((await sender.next((f) => f.op === 'ack' && f.ref === `${user}-${i}`)).id as string);
      }
      const now = Date.now();
      await client.multi().zadd('ocs:nodes', now, batching, now, plain).zadd('ocs:nb', now, batching).hset(`ocs:pu:${user}`, batching, 1, plain, 1).exec();
      const here = await on(2, user);
      assert.equal(here.welcome.pending, 5);
      const order = [ids[4], ...ids.slice(0, 4)]; // in queue order: CRITICAL first
      const local = [await here.next((f) => f.op === 'msg'), await here.next((f) => f.op === 'batch')];
      assert.deepEqual([local[0]!.id, ...(local[1]!.msgs as Frame[]).map((m) => m.id)], order, 'this node: CRITICAL alone, then one batch frame');
      for (const id of order) here.send({ op: 'ack', id });
      const of = (node: string): unknown[][] => heard.get(node)!.filter((record) => record[1] === user);
      const singles = await until(() => (of(plain).length >= 5 ? of(plain) : undefined), 'five records for the node that takes no batches');
      assert.deepEqual(singles.map((r) => [r[0], r[1], r[2]]), order.map((id) => [1, user, id]), 'one DELIVER_USER record per message, in queue order');
      await new Promise((r) => setTimeout(r, 100));
      const records = of(batching);
      if (records.length !== 1) return false; // this node had not read `P nb` yet: one record per message
      const [kind, to, entries] = records[0]! as [number, string, Array<[string, string, number]>];
      assert.deepEqual([kind, to], [4, user]);
      assert.deepEqual(entries.map(([id]) => id), order);
      for (const [id, frame, deadline] of entries) {
        assert.equal(JSON.parse(frame).id, id);
        assert.ok(deadline > now && deadline < now + 60_000, 'each entry carries its ack deadline');
      }
      return true;
    });
    // The faked nodes and the connections they were given, so that no later test routes to them.
    const cleanup = client.multi().zrem('ocs:nodes', batching, plain).zrem('ocs:nb', batching);
    for (let i = 0; i < attempt; i++) cleanup.hdel(`ocs:pu:share-${i}`, batching, plain);
    await cleanup.exec();
  });

  test('a batch record from another node is delivered as on one process; a malformed one is counted and dropped', async () => {
    const packr = new Packr({ useRecords: false, moreTypes: false });
    const client = redis.client();
    const recipient = await on(1, 'batch-reader');
    const [node1] = await client.hkeys('ocs:pu:batch-reader');
    const entry = (id: string, pri: number): [string, string, number] => [id, encodeStoredMsg(id, 'elsewhere', null, `"${id}"`, pri, Date.now()), Date.now() + 5000];
    const malformed = async (): Promise<number> => ((await getJson(nodes[1]!.port, '/stats')).body.messaging as Record<string, number>).cluster_malformed!;
    const before = await malformed();
    for (const bad of [[4, 'batch-reader', 'not a list'], [4, 'batch-reader', [['b-x', 'frame']]], [4, 'batch-reader', [['b-y', 'frame', -1]]], [4, 7, []]]) {
      await client.publish(`ocs:n:${node1}`, packr.pack(bad));
    }
    await client.publish(`ocs:n:${node1}`, packr.pack([4, 'batch-reader', [entry('b-1', 3), entry('b-2', 1), entry('b-3', 1)]]));
    const critical = await recipient.next((f) => f.op === 'msg' || f.op === 'batch');
    const rest = await recipient.next((f) => f.op === 'msg' || f.op === 'batch');
    assert.deepEqual([critical.op, critical.id, rest.op, (rest.msgs as Frame[]).map((m) => m.id)], ['msg', 'b-1', 'batch', ['b-2', 'b-3']]);
    await untilTrue('four malformed records counted', async () => (await malformed()) === before + 4);
  });

  test('a message stored for an offline user is delivered by the node it connects to, once', async () => {
    const sender = await on(0, 'early');
    for (let i = 0; i < 5; i++) sender.send({ op: 'send', to: 'later', data: { i }, ref: `o${i}`, pri: i === 4 ? 3 : 1 });
    for (let i = 0; i < 5; i++) await sender.next((f) => f.op === 'ack' && f.ref === `o${i}`);
    const late = await on(2, 'later');
    assert.equal(late.welcome.pending, 5);
    const critical = await late.next((f) => f.op === 'msg' || f.op === 'batch');
    assert.deepEqual([critical.op, critical.pri, (critical.data as { i: number }).i], ['msg', 3, 4], 'CRITICAL first, alone, as on one process');
    const backlog = await late.next((f) => f.op === 'msg' || f.op === 'batch');
    assert.equal(backlog.op, 'batch', 'the rest of a backlog comes as `batch` frames, as on one process');
    const msgs = [critical, ...(backlog.msgs as Frame[])];
    for (const msg of msgs) late.send({ op: 'ack', id: msg.id });
    assert.deepEqual(msgs.map((m) => (m.data as { i: number }).i), [4, 0, 1, 2, 3], 'CRITICAL first, then in the order sent');
    // The acks reach Redis a moment after they leave the client; until then another connection would get the messages too.
    const client = redis.client();
    for (let i = 0; i < 100 && (await client.zcard('ocs:q:u:later')) > 0; i++) await new Promise((r) => setTimeout(r, 20));
    // Another connection of the same user, elsewhere, later: nothing is left for it.
    const again = await on(1, 'later');
    assert.equal(again.welcome.pending, 0);
  });

  test('a scheduled send from one node is delivered on another at its time', async () => {
    const receiver = await on(1, 'sched');
    const sender = await on(2, 'scheduler');
    const at = Date.now() + 600;
    sender.send({ op: 'send', to: 'sched', data: { when: at }, at, ref: 'at' });
    await sender.next((f) => f.op === 'ack');
    const msg = await receiver.next((f) => f.op === 'msg', 5000);
    assert.ok(Date.now() >= at, 'not before its time');
    receiver.send({ op: 'ack', id: msg.id });
  });

  test('`any` goes to exactly one member across the nodes, round robin, each acked once', async () => {
    const members = [await on(0, 'w0', ['workers']), await on(1, 'w1', ['workers']), await on(2, 'w2', ['workers'])];
    const sender = await on(1, 'boss', ['workers']);
    for (let i = 0; i < 30; i++) sender.send({ op: 'any', group: 'workers', data: { job: i }, ref: `j${i}` });
    for (let i = 0; i < 30; i++) await sender.next((f) => f.op === 'ack' && f.ref === `j${i}`);
    const jobs = new Map<number, string>();
    const counts = [0, 0, 0, 0];
    const collect = async (client: Member, index: number): Promise<void> => {
      for (;;) {
        const msg = await client.next((f) => f.op === 'msg', 1500).catch(() => null);
        if (msg === null) return;
        const job = (msg.data as { job: number }).job;
        assert.equal(jobs.has(job), false, `job ${job} delivered twice`);
        jobs.set(job, msg.id as string);
        counts[index]!++;
        client.send({ op: 'ack', id: msg.id });
      }
    };
    await Promise.all([...members, sender].map((client, i) => collect(client, i)));
    assert.equal(jobs.size, 30);
    for (const count of counts) assert.ok(count >= 4, `every member had its turn: ${counts}`);
    // The rotation and the members index are kept in Redis while the group has members anywhere, and no longer.
    const keys = redis.client();
    const kept = ['ocs:rc:workers', 'ocs:pm:workers', 'ocs:pa:workers'];
    assert.equal(await keys.exists(...kept), 3);
    for (const client of [...members, sender]) {
      client.send({ op: 'leave', group: 'workers', ref: 'bye' });
      await client.next((f) => f.op === 'left');
    }
    await untilTrue('the rotation and index keys removed', async () => (await keys.exists(...kept)) === 0);
  });

  test('an `any` for a group with no member online waits, and goes to the first member who joins, on any node', async () => {
    const sender = await on(0, 'asker');
    sender.send({ op: 'any', group: 'nobody-yet', data: { q: 1 }, ref: 'a' });
    await sender.next((f) => f.op === 'ack');
    const helper = await on(2, 'helper', ['nobody-yet']);
    const msg = await helper.next((f) => f.op === 'msg', 3000);
    assert.deepEqual(msg.data, { q: 1 });
    helper.send({ op: 'ack', id: msg.id });
  });

  test('ack of an unknown id is E_UNKNOWN_ID; a hostile user id is refused as on one process', async () => {
    const client = await on(2, 'acker');
    client.send({ op: 'ack', id: 'nope-1' });
    const refused = await client.next((f) => f.op === 'err');
    assert.deepEqual([refused.code, refused.id], ['E_UNKNOWN_ID', 'nope-1']);
    client.send({ op: 'send', to: '__proto__', data: {}, ref: 'p' });
    assert.equal((await client.next((f) => f.op === 'ack' && f.ref === 'p')).op, 'ack');
    const proto = await on(1, '__proto__');
    assert.equal(proto.welcome.pending, 1);
    const msg = await proto.next((f) => f.op === 'msg');
    proto.send({ op: 'ack', id: msg.id });
  });
});
