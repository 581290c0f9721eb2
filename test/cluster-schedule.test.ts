/**
 * Scheduled sends and redeliveries in cluster mode go out at their time, not at the next sweep:
 * the node that stored a scheduled send, or delivered a message, wakes up then
 * (src/cluster/sweeps.ts); if that node is gone, any other node's sweep takes it within
 * cluster.sweep_interval. Two real nodes on a private Redis, with a sweep interval long enough
 * to tell the two apart.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { member, type TestClient } from './helpers/client.js';
import { clusterFixture } from './helpers/cluster-fixture.js';
import { announceSkip, nodeConfig } from './helpers/redis.js';
import type { ServerProcess } from './helpers/server.js';

const skip = announceSkip('cluster-schedule.test');
const SWEEP_S = 3;

/**
 * Two nodes on a private Redis for the enclosing describe (started before its tests, stopped
 * after them), sweeping every `sweepS` seconds; `on` opens a member on one of them.
 */
function twoNodes(prefix: string, sweepS: number, extra: Record<string, unknown> = {}): { nodes: ServerProcess[]; on(node: number, user: string): Promise<TestClient> } {
  const config = (url: string): Record<string, unknown> => {
    const node = nodeConfig(url, prefix, 1, extra);
    Object.assign(node.cluster as object, { sweep_interval: sweepS });
    return node;
  };
  const { nodes, open } = clusterFixture({ nodes: [{ config }, { config }], stop: 'graceful' });
  const on = async (node: number, user: string): Promise<TestClient> => {
    const client = await member(nodes[node]!.port, user);
    open.push(client);
    return client;
  };
  return { nodes, on };
}

describe('scheduled sends across two nodes', { skip }, () => {
  const { nodes, on } = twoNodes('sched:', SWEEP_S);

  test('a scheduled send reaches its recipient on another node at its time, well before the next sweep', async () => {
    const sender = await on(0, 'planner');
    const recipient = await on(1, 'attendee');
    const at = Date.now() + 700;
    sender.send({ op: 'send', to: 'attendee', data: 'on time', at, ref: 's' });
    await sender.next((f) => f.op === 'ack' && f.ref === 's');
    const msg = await recipient.next((f) => f.op === 'msg', SWEEP_S * 2000);
    const late = Date.now() - at;
    assert.equal(msg.data, 'on time');
    assert.ok(late >= 0, `not before its time (${late} ms)`);
    assert.ok(late < 500, `${late} ms after its time, where the next sweep could be ${SWEEP_S} s away`);
  });

  test('when the node that stored it is gone, another node delivers it at its next sweep', async () => {
    const sender = await member(nodes[0]!.port, 'leaving');
    const recipient = await on(1, 'stayer');
    const at = Date.now() + 300;
    sender.send({ op: 'send', to: 'stayer', data: 'still delivered', at, ref: 'g' });
    await sender.next((f) => f.op === 'ack' && f.ref === 'g');
    await nodes[0]!.stop('SIGKILL');
    const msg = await recipient.next((f) => f.op === 'msg', SWEEP_S * 3000);
    assert.equal(msg.data, 'still delivered');
  });
});

describe('redeliveries after an ack deadline, across two nodes', { skip }, () => {
  /** The longest sweep interval there is: a redelivery left to the interval sweeps would come seconds late. */
  const INTERVAL_S = 10;
  /** delivery.ack_timeout; each further wait doubles. */
  const ACK_MS = 300;
  /** Generous: the deadline's sweep is on a 50 ms grid, then SWEEP, ROUTE and a PUBLISH. */
  const SLACK_MS = 1500;
  const { on } = twoNodes('redeliver:', INTERVAL_S, { websocket: { delivery: { ack_timeout: ACK_MS / 1000, backoff_multiplier: 2, max_backoff: 5, max_attempts: 5 } } });
  /** The next two deliveries of one message after `first` (ms): each near its deadline, ACK_MS then twice that. */
  const redeliveredOnTime = async (recipient: TestClient, id: unknown, first: number): Promise<void> => {
    let previous = first;
    for (const wait of [ACK_MS, 2 * ACK_MS]) {
      const again = await recipient.next((f) => f.op === 'msg', INTERVAL_S * 2000);
      const gap = Date.now() - previous;
      previous = Date.now();
      assert.equal(again.id, id);
      assert.ok(gap >= wait - 50, `redelivered ${gap} ms after the delivery before it, before its ${wait} ms deadline`);
      assert.ok(gap < wait + SLACK_MS, `redelivered ${gap} ms after the delivery before it (deadline ${wait} ms), where the next interval sweep could be ${INTERVAL_S} s away`);
    }
    recipient.send({ op: 'ack', id });
  };

  test('a message routed at once to a user on another node comes again at each ack deadline', async () => {
    const sender = await on(0, 'impatient');
    const recipient = await on(1, 'forgetful');
    sender.send({ op: 'send', to: 'forgetful', data: 'again', ref: 'r' });
    await sender.next((f) => f.op === 'ack' && f.ref === 'r');
    const msg = await recipient.next((f) => f.op === 'msg');
    await redeliveredOnTime(recipient, msg.id, Date.now());
  });

  test('a message from a backlog (claimed when its user connected) comes again at each ack deadline', async () => {
    const sender = await on(0, 'early-bird');
    sender.send({ op: 'send', to: 'latecomer', data: 'waited', ref: 'w' });
    await sender.next((f) => f.op === 'ack' && f.ref === 'w');
    const recipient = await on(1, 'latecomer');
    const msg = await recipient.next((f) => f.op === 'msg');
    await redeliveredOnTime(recipient, msg.id, Date.now());
  });
});
