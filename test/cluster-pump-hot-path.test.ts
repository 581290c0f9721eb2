/**
 * ROUTE_USER answers 'pump' whenever another message of the user waits in P qu:USER (a lapsed
 * hold: cluster-window-hold.test.ts), and a STORE puts each new message there before its ROUTE
 * runs. When the STORE of message B runs before the ROUTE of message A (before_commit off: the
 * route waits for the store's reply; or senders on two nodes), a ROUTE_USER of an online user
 * with room in its window may answer 'pump': this guards that it stays a few PUMPs (one a node
 * at a time per user), not one a message, on the hot path. A review's guard, no fix behind it:
 * 3 and 4 PUMPs for 300 messages when it was written.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { PUMP, ROUTE_USER } from '../src/cluster/window-scripts.js';
import { member } from './helpers/client.js';
import { nextMsgs } from './helpers/messaging.js';
import { announceSkip, nodeConfig, startPrivateRedis, type PrivateRedis } from './helpers/redis.js';
import { watchCommands } from './helpers/script-work.js';
import { startProcess, type ServerProcess } from './helpers/server.js';

const skip = announceSkip('cluster-pump-hot-path.test');
const sha = (source: string): string => createHash('sha1').update(source).digest('hex');
const N = 300;

for (const [label, beforeCommit, nodesCount] of [
  ['one node, before_commit off', false, 1],
  ['two nodes, a sender on each, before_commit on', true, 2],
] as const) {
  describe(`hot path: ${label}`, { skip, timeout: 90_000 }, () => {
    let redis: PrivateRedis;
    const nodes: ServerProcess[] = [];
    before(async () => {
      redis = await startPrivateRedis();
      for (let i = 0; i < nodesCount; i++) {
        nodes.push(await startProcess(nodeConfig(redis.url, 'hp:', 1, { websocket: { delivery: { ack_timeout: 300, max_backoff: 300, before_commit: beforeCommit, max_inflight_per_user: 100_000 } } })));
      }
    });
    after(async () => {
      for (const n of nodes) await n.stop();
      await redis?.stop();
    });

    test(`${N} messages to one online user with room: ROUTE_USERs and PUMPs counted, order kept`, async () => {
      const reader = await member(nodes[0]!.port, 'reader');
      const senders = await Promise.all(nodes.map((n, i) => member(n.port, `sender${i}`)));
      let routes = 0;
      let pumps = 0;
      const unwatch = await watchCommands(redis.url, (args) => {
        if (args[0]?.toLowerCase() !== 'evalsha') return;
        if (args[1] === sha(PUMP)) pumps++;
        if (args[1] === sha(ROUTE_USER)) routes++;
      });
      for (let i = 0; i < N; i++) senders[i % senders.length]!.send({ op: 'send', to: 'reader', data: i, ref: `s${i}` });
      for (let i = 0; i < N; i++) await senders[i % senders.length]!.next((f) => f.ref === `s${i}`, 20_000);
      const got = (await nextMsgs(reader, N, 20_000)).map((m) => m.data as number);
      await new Promise((r) => setTimeout(r, 500));
      unwatch();
      if (senders.length === 1) assert.deepEqual(got, Array.from({ length: N }, (_, i) => i));
      assert.equal(new Set(got).size, N, 'each once');
      assert.ok(pumps <= N / 10, `${pumps} PUMPs for ${N} messages sent to an online user whose window had room (${routes} ROUTE_USERs)`);
      for (const s of senders) s.close();
      reader.close();
    });
  });
}
