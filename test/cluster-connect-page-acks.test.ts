/**
 * A new connection of a user with more messages in flight than one CONNECT lists (500) is
 * handed them only once the last page is in (backlog.ts): a message another connection of the
 * user acknowledges after the script that listed it ran, and before that hand-out, is no longer
 * in flight and must not be handed to it. Both ways an ack reaches Redis: through another node
 * (which this one never hears of) and through the node listing (its own ACKS script). Before
 * 2026-12-07's fix both came to the new connection. Real node processes; the node under test
 * reaches its private Redis through a TCP proxy that holds each command 300 ms, so that the
 * acks, sent as soon as MONITOR shows the CONNECT run, land between the listing's scripts.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { after, describe, test } from 'node:test';
import { CONNECT, CONNECT_PAGE } from '../src/cluster/window-scripts.js';
import { member, type Frame, type TestClient } from './helpers/client.js';
import { nextMsgs, settle, unreadData } from './helpers/messaging.js';
import { clusterFixture } from './helpers/cluster-fixture.js';
import { announceSkip } from './helpers/redis.js';
import { watchCommands } from './helpers/script-work.js';

const skip = announceSkip('cluster-connect-page-acks.test');
const sha = (source: string): string => createHash('sha1').update(source).digest('hex');
// Deadlines minutes away: no redelivery explains what arrives.
const LONG = { websocket: { delivery: { ack_timeout: 300, max_backoff: 300 } } };
const COUNT = 1200; // CONNECT lists 500, a page 500, a last page 200

describe('acks while a new connection\'s listing pages', { skip, timeout: 90_000 }, () => {
  const cluster = clusterFixture({ nodes: { slow: { prefix: 'pa:', extra: LONG, throughProxy: true }, other: { prefix: 'pa:', extra: LONG } }, store: true });
  const open: TestClient[] = [];
  after(() => {
    for (const client of open) client.close();
  });

  test('a message acknowledged (on either node) after its listing ran is not handed to the new connection', async () => {
    const sender = await member(cluster.nodes.other.port, 'sender');
    const far = await member(cluster.nodes.other.port, 'reader'); // acks through the other node
    const near = await member(cluster.nodes.slow.port, 'reader'); // acks through the node listing
    open.push(sender, far, near);
    for (let i = 0; i < COUNT; i++) sender.send({ op: 'send', to: 'reader', data: i, ref: `r${i}` });
    for (let i = 0; i < COUNT; i++) assert.equal((await sender.next((f) => f.ref === `r${i}`, 20_000)).op, 'ack');
    const inFlight = await nextMsgs(far, COUNT, 20_000);
    assert.equal((await nextMsgs(near, COUNT, 20_000)).length, COUNT);
    // Listed by CONNECT (the first 500): 0 acked on the other node, 1 on the slow one; and 700
    // (the first page's) on the other node, acked before that page runs: the page skips it.
    const byData = (d: number): string => inFlight.find((m) => m.data === d)!.id as string;
    const acked = [0, 1, 700];
    const runs: string[] = [];
    let sent = false;
    const unwatch = await watchCommands(cluster.redis.url, (args) => {
      if (args[0]?.toLowerCase() !== 'evalsha') return;
      if (args[1] === sha(CONNECT_PAGE)) runs.push('PAGE');
      if (sent || args[1] !== sha(CONNECT) || args[5] !== 'reader') return;
      runs.push('CONNECT');
      sent = true; // the listing's first script ran: its next reaches Redis 300 ms or more later
      far.send({ op: 'ack', ids: [byData(0), byData(700)] });
      near.send({ op: 'ack', ids: [byData(1)] });
    });
    cluster.proxy.delayUpstreamMs = 300;
    let fresh: TestClient;
    try {
      fresh = await member(cluster.nodes.slow.port, 'reader');
      open.push(fresh);
      const got = new Set<number>();
      for (;;) {
        const batch = await nextMsgs(fresh, 1, 3000).catch(() => [] as Frame[]);
        if (batch.length === 0) break;
        for (const m of batch) got.add(m.data as number);
      }
      await settle(far);
      await settle(near);
      assert.ok(sent, 'the acks went as CONNECT ran');
      assert.ok(runs.filter((r) => r === 'PAGE').length >= 2, `listed in pages: ${runs.join(' ')}`);
      for (const client of [far, near]) assert.deepEqual(client.frames.filter((f) => f.op === 'err'), [], 'the acks were taken');
      // Those acks ran before the last page did (300 ms a round trip), well before the hand-out.
      const ackedHanded = acked.filter((d) => got.has(d));
      assert.deepEqual(ackedHanded, [], `no acknowledged message handed to the new connection (it got ${got.size})`);
      const missed = Array.from({ length: COUNT }, (_, d) => d).filter((d) => !acked.includes(d) && !got.has(d));
      assert.deepEqual(missed, [], 'every message still in flight');
      assert.deepEqual(unreadData(far), [], 'nothing more to the first connections');
    } finally {
      unwatch();
      cluster.proxy.delayUpstreamMs = 0;
    }
  });
});
