import assert from 'node:assert/strict';
import { Agent, request } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { getJson, member, onShard } from './helpers/client.js';
import { until } from './helpers/messaging.js';
import { startInProcess } from './helpers/server.js';
import type { RunningServer } from '../src/index.js';

type Health = { status: string; shard: number; shards: { list: Array<{ shard: number; links: Record<string, { backlog_bytes: number; unread_bytes: number; waiting_ms: number }> }> } };

/**
 * A shard that stops reading its rings used to leave /health at "ok" while its clients got
 * nothing. /health now shows, per shard, what waits in each of its rings and for how long.
 */
describe('/health and links that do not drain', () => {
  let server: RunningServer;
  // One kept-alive connection: every request is answered by the same shard, the one not stalled.
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  before(async () => {
    server = await startInProcess({ websocket: { monitoring: { link_stuck_after: 1 } } });
  });
  after(async () => {
    agent.destroy();
    await server.close();
  });

  async function alerts(): Promise<{ active: Array<{ alert: string }>; recent: Array<{ alert: string; state: string }> }> {
    return (await getJson(server.port, '/alerts')).body as { active: Array<{ alert: string }>; recent: Array<{ alert: string; state: string }> };
  }

  function health(): Promise<Health> {
    return new Promise((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: server.port, path: '/health', agent }, (res) => {
        let text = '';
        res.on('data', (chunk: Buffer) => (text += chunk.toString()));
        res.on('end', () => resolve(JSON.parse(text) as Health));
      });
      req.once('error', reject);
      req.end();
    });
  }

  test('a stalled shard shows as degraded, with the bytes its ring holds and how long they have waited, and recovers', async () => {
    const first = await health();
    assert.equal(first.status, 'ok');
    const stalled = 1 - first.shard;
    for (const entry of first.shards.list) {
      assert.deepEqual(Object.keys(entry.links).sort(), ['from_broker', 'to_broker', 'to_shards']);
      // Metrics reports cross the rings every interval, so a link may hold a record in passing:
      // what matters is that nothing is held back and nothing waits long.
      for (const link of Object.values(entry.links)) assert.ok(link.backlog_bytes === 0 && link.waiting_ms < 1000, JSON.stringify(link));
    }
    // A member there: group messages go only to shards with members of the group.
    const listener = await onShard(stalled, (attempt) => member(server.port, `listener${attempt}`, ['stalled-room']));
    server.injectShardStall(stalled, 4000);
    await new Promise((resolve) => setTimeout(resolve, 50)); // the stall has begun
    server.publish('stalled-room', { text: 'goes to the stalled shard, read by none while stalled' });
    const degraded = await until(async () => {
      const h = await health();
      return h.status === 'degraded' ? h : undefined;
    }, '/health degraded');
    assert.equal(degraded.shard, first.shard, 'answered by the shard that is not stalled');
    const fromBroker = degraded.shards.list[stalled]!.links.from_broker!;
    assert.ok(fromBroker.unread_bytes > 0, JSON.stringify(fromBroker));
    assert.ok(fromBroker.waiting_ms >= 1000, JSON.stringify(fromBroker));
    await until(async () => ((await health()).status === 'ok' ? true : undefined), '/health ok once the shard reads again');
    listener.close();
  });

  test('a shard stalled with no traffic at all shows too: the metrics request it does not read waits in its ring', async () => {
    const first = await health();
    assert.equal(first.status, 'ok');
    const stalled = 1 - first.shard;
    server.injectShardStall(stalled, 4000);
    const degraded = await until(async () => {
      const h = await health();
      return h.status === 'degraded' ? h : undefined;
    }, '/health degraded with no message sent');
    const fromBroker = degraded.shards.list[stalled]!.links.from_broker!;
    assert.ok(fromBroker.unread_bytes > 0 && fromBroker.waiting_ms >= 1000, JSON.stringify(fromBroker));
    // And the alert a pager would watch, raised once and cleared once the shard reads again.
    await until(async () => ((await alerts()).active.some((a) => a.alert === 'link_stuck') ? true : undefined), 'the link_stuck alert');
    await until(async () => ((await health()).status === 'ok' ? true : undefined), '/health ok once the shard reads again');
    await until(async () => ((await alerts()).recent.some((e) => e.alert === 'link_stuck' && e.state === 'cleared') ? true : undefined), 'link_stuck cleared');
  });
});
