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
import { after, before, describe, test } from 'node:test';
import { member } from './helpers/client.js';
import { nextMsgs } from './helpers/messaging.js';
import { announceSkip, nodeConfig, startPrivateRedis, type PrivateRedis } from './helpers/redis.js';
import { startProcess, type ServerProcess } from './helpers/server.js';
import { tcpProxy, type TcpProxy } from './helpers/tcp-proxy.js';

const skip = announceSkip('cluster-rescan-budget.test');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
// Deadlines minutes away (no redelivery explains what arrives); a window, and so a budget, of 20.
const CONFIG = { websocket: { delivery: { ack_timeout: 300, max_backoff: 300, max_inflight_per_user: 20 } } };

describe('a rescan for a user whose resend budget is spent', { skip, timeout: 60_000 }, () => {
  let redis: PrivateRedis;
  let proxy: TcpProxy;
  let cutOff: ServerProcess;
  let other: ServerProcess;
  before(async () => {
    redis = await startPrivateRedis();
    proxy = await tcpProxy(redis.port);
    cutOff = await startProcess(nodeConfig(`redis://127.0.0.1:${proxy.port}`, 'rb:', 1, CONFIG));
    other = await startProcess(nodeConfig(redis.url, 'rb:', 1, CONFIG));
  });
  after(async () => {
    for (const node of [cutOff, other]) if (node?.child.exitCode === null) await node.stop('SIGKILL');
    await proxy?.close();
    await redis?.stop();
  });

  test('claims what was stored for it while its node was cut off, at once', async () => {
    const first = await member(cutOff.port, 'reader');
    const sender = await member(other.port, 'sender');
    for (let i = 0; i < 15; i++) sender.send({ op: 'send', to: 'reader', data: i, ref: `r${i}` });
    for (let i = 0; i < 15; i++) await sender.next((f) => f.ref === `r${i}`, 10_000);
    assert.equal((await nextMsgs(first, 15)).length, 15);
    // A second connection is listed the 15: 5 of the budget of 20 are left for the next 300 s.
    const second = await member(cutOff.port, 'reader');
    assert.equal((await nextMsgs(second, 15)).length, 15);
    proxy.refuse = true;
    await sleep(4500); // past presence_ttl (3 s): the other node no longer takes the reader as online
    for (let i = 15; i < 18; i++) sender.send({ op: 'send', to: 'reader', data: i, ref: `r${i}` });
    for (let i = 15; i < 18; i++) await sender.next((f) => f.ref === `r${i}`, 10_000);
    proxy.refuse = false;
    for (const reader of [first, second]) {
      assert.deepEqual((await nextMsgs(reader, 3, 8000)).map((m) => m.data), [15, 16, 17], 'from the rescan, with no ack of its');
    }
    sender.close();
    first.close();
    second.close();
  });
});
