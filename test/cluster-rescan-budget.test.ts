/**
 * A rescan for a user whose connections had what is in flight lists none of it (CONNECT's
 * listing 0), so the node's resend budget (delivery.max_inflight_per_user resent per
 * ack_timeout, for new connections' listings) is not its to spend nor to test: a user who had
 * reconnected lately (its budget spent below what it has in flight) had nothing claimed by the
 * rescan, and what was stored for it while its node was cut off waited for its next ack or
 * message (found by a review of 2026-12-07). Real node processes; the cut-off node reaches its
 * private Redis through a TCP proxy.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { sleep } from './helpers/broker.js';
import { member } from './helpers/client.js';
import { clusterFixture } from './helpers/cluster-fixture.js';
import { nextMsgs } from './helpers/messaging.js';
import { announceSkip } from './helpers/redis.js';

const skip = announceSkip('cluster-rescan-budget.test');
// Deadlines minutes away (no redelivery explains what arrives); a window, and so a budget, of 20.
const CONFIG = { websocket: { delivery: { ack_timeout: 300, max_backoff: 300, max_inflight_per_user: 20 } } };

describe('a rescan for a user whose resend budget is spent', { skip, timeout: 60_000 }, () => {
  const cluster = clusterFixture({ nodes: { cutOff: { prefix: 'rb:', extra: CONFIG, throughProxy: true }, other: { prefix: 'rb:', extra: CONFIG } } });

  test('claims what was stored for it while its node was cut off, at once', async () => {
    const first = await member(cluster.nodes.cutOff.port, 'reader');
    const sender = await member(cluster.nodes.other.port, 'sender');
    for (let i = 0; i < 15; i++) sender.send({ op: 'send', to: 'reader', data: i, ref: `r${i}` });
    for (let i = 0; i < 15; i++) await sender.next((f) => f.ref === `r${i}`, 10_000);
    assert.equal((await nextMsgs(first, 15)).length, 15);
    // A second connection is listed the 15: 5 of the budget of 20 are left for the next 300 s.
    const second = await member(cluster.nodes.cutOff.port, 'reader');
    assert.equal((await nextMsgs(second, 15)).length, 15);
    cluster.proxy.refuse = true;
    await sleep(4500); // past presence_ttl (3 s): the other node no longer takes the reader as online
    for (let i = 15; i < 18; i++) sender.send({ op: 'send', to: 'reader', data: i, ref: `r${i}` });
    for (let i = 15; i < 18; i++) await sender.next((f) => f.ref === `r${i}`, 10_000);
    cluster.proxy.refuse = false;
    for (const reader of [first, second]) {
      assert.deepEqual((await nextMsgs(reader, 3, 8000)).map((m) => m.data), [15, 16, 17], 'from the rescan, with no ack of its');
    }
    sender.close();
    first.close();
    second.close();
  });
});
