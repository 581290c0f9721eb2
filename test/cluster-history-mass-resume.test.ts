/**
 * A node back from an outage with members in many history groups asks Redis for what each
 * missed (src/cluster/history.ts, resume), and every answer comes on its one subscriber
 * connection, where Redis closes a subscriber with more than 32 MB waiting (its default
 * client-output-buffer-limit for pubsub). Two real nodes on a private Redis, one of them
 * through a proxy the test cuts.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { getJson, member, type TestClient } from './helpers/client.js';
import { clusterFixture } from './helpers/cluster-fixture.js';
import { joinGroup, msgsOf } from './helpers/history.js';
import { untilTrue } from './helpers/messaging.js';
import { announceSkip, nodeConfig } from './helpers/redis.js';

const skip = announceSkip('cluster-history-mass-resume.test');
// 200 groups missing 5 messages of 50 KB each: 50 MB of answers (each within max_replay_bytes).
const GROUPS = 200;
const MISSED = 5;
const DATA = 'x'.repeat(50_000);

function config(redisUrl: string): Record<string, unknown> {
  const node = nodeConfig(redisUrl, 'mass:', 1, { websocket: { history: [{ pattern: 'room.*', size: 100 }], limits: { messages_per_second: 0 } } });
  Object.assign(node.cluster as object, { reconnect_max_delay: 0.2, command_timeout: 1, presence_ttl: 30 });
  return node;
}

describe('a node back from an outage with members in many history groups', { skip, timeout: 60_000 }, () => {
  /** 0 reaches Redis through the proxy, 1 directly. */
  const cluster = clusterFixture({ nodes: [{ config, throughProxy: true }, { config }], stop: 'graceful' });

  /** MISSED messages of DATA to `group`, each again until acknowledged: the node refuses what it is behind on (E_OVERLOADED). */
  async function publishMissed(publisher: TestClient, group: string): Promise<void> {
    for (let acked = 0; acked < MISSED; ) {
      const ref = `${group}.${acked}`;
      publisher.send({ op: 'pub', group, data: DATA, ref });
      if ((await publisher.next((f) => f.ref === ref, 10_000)).op === 'ack') acked++;
    }
  }

  test('gets every group what it missed, without making Redis drop its subscriber connection', async () => {
    const { nodes, open, proxy } = cluster;
    const [mine, publisher] = [await member(nodes[0]!.port, 'mine'), await member(nodes[1]!.port, 'publisher')];
    open.push(mine, publisher);
    for (let g = 0; g < GROUPS; g++) mine.send({ op: 'join', group: `room.${g}`, ref: `j${g}` });
    await mine.next((f) => f.op === 'joined' && f.ref === `j${GROUPS - 1}`, 20_000);
    const redisOf = async (): Promise<string> => ((await getJson(nodes[0]!.port, '/health')).body.cluster as { redis: string }).redis;

    proxy.refuse = true;
    await untilTrue('node 0 to see Redis go', async () => (await redisOf()) !== 'up');
    for (let g = 0; g < GROUPS; g++) await publishMissed(publisher, `room.${g}`);
    const backAt = Date.now();
    proxy.refuse = false;

    const offsets = new Map<string, number[]>();

    for (let got = 0; got < GROUPS * MISSED; ) {
      for (const msg of msgsOf(await mine.next((f) => f.op === 'msg' || f.op === 'batch', 15_000))) {
        const group = msg.group as string;
        offsets.set(group, [...(offsets.get(group) ?? []), msg.offset as number]);
        got++;
      }
    }
    for (const [group, seen] of offsets) assert.deepEqual(seen, [1, 2, 3, 4, 5], group);
    assert.equal(offsets.size, GROUPS);
    const lost = nodes[0]!.logs.filter((l) => Number(l.time) >= backAt && /Redis unreachable/.test(String(l.msg)));
    assert.deepEqual(lost.map((l) => l.lastError), [], 'Redis kept the subscriber connection');
  });

  test('so do 250 clients that join one such group at once, recovering its 250 KB', async () => {
    const { nodes, open } = cluster;
    const clients = await Promise.all(Array.from({ length: 251 }, (_, i) => member(nodes[0]!.port, `herd${i}`)));
    open.push(...clients);
    const { epoch } = (await joinGroup(clients.pop()!, 'room.herd')).joined;
    await publishMissed(clients[0]!, 'room.herd');
    const startedAt = Date.now();
    const answers = await Promise.all(clients.map((client) => joinGroup(client, 'room.herd', { offset: 0, epoch: epoch as string })));
    assert.deepEqual(new Set(answers.map(({ joined, replayed }) => `${String(joined.recovered)} ${replayed.length}`)), new Set(['true 5']));
    const lost = nodes[0]!.logs.filter((l) => Number(l.time) >= startedAt && /Redis unreachable/.test(String(l.msg)));
    assert.deepEqual(lost.map((l) => l.lastError), [], 'Redis kept the subscriber connection');
  });
});
