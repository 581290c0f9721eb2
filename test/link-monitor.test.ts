import { ClusterState, createClusterState } from '../src/shared/cluster-state.js';
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { LinkMonitor } from '../src/primary/link-monitor.js';
import { createRingBuffer, RingReader, RingWriter } from '../src/rings/ring.js';
import { createShardTable, Link, ShardStatus, ShardTable } from '../src/shared/shard-table.js';
import { health, type HttpContext } from '../src/shard/http.js';

/** Two shards' rings, the table, and a monitor over them (sampled by hand, with the times given). */
function setup(): { table: ShardTable; monitor: LinkMonitor; fromBroker: SharedArrayBuffer[]; brokerOverflow: { bytes: number; since: number }; context: HttpContext } {
  const table = new ShardTable(createShardTable(2));
  for (const shard of [0, 1]) table.setStatus(shard, ShardStatus.UP);
  const ring = (): SharedArrayBuffer => createRingBuffer(1024);
  const fromBroker = [ring(), ring()];
  const brokerOverflow = { bytes: 0, since: 0 };
  const monitor = new LinkMonitor({ table, toBroker: [ring(), ring()], fromBroker, rings: [[null, ring()], [ring(), null]], brokerOverflow: (shard) => (shard === 1 ? brokerOverflow : { bytes: 0, since: 0 }) });
  const context: HttpContext = { shard: 0, linkStuckMs: 5000, table, cluster: new ClusterState(createClusterState()), version: 'test', startedAt: Date.now(), maxConnections: 10, metricsEnabled: true, isStopping: () => false };
  return { table, monitor, fromBroker, brokerOverflow, context };
}

type Body = { status: string; shards: { stuck_links: number; list: Array<{ links: Record<string, { backlog_bytes: number; unread_bytes: number; waiting_ms: number }> }> } };

describe('links in /health', () => {
  test('a ring whose consumer stops reading shows its unread bytes and how long they sat; past link_stuck_after the server is degraded; reading clears it', () => {
    const { monitor, fromBroker, context } = setup();
    const now = Date.now();
    new RingWriter(fromBroker[1]!).tryWrite(new Uint8Array(100));
    monitor.sample(now - 6000);
    monitor.sample(now); // not a byte read since
    const body = health(context).body as Body;
    assert.equal(body.shards.list[1]!.links.from_broker!.unread_bytes, 104);
    assert.equal(body.status, 'degraded');
    assert.equal(body.shards.stuck_links, 1);
    assert.ok(body.shards.list[1]!.links.from_broker!.waiting_ms >= 6000);
    assert.deepEqual(body.shards.list[0]!.links.from_broker, { backlog_bytes: 0, unread_bytes: 0, waiting_ms: 0 });

    const reader = new RingReader(fromBroker[1]!);
    reader.next();
    reader.release();
    monitor.sample(now);
    assert.equal((health(context).body as Body).status, 'ok');
  });

  test('a ring that drains between looks is not stuck, however long it stays busy', () => {
    const { monitor, fromBroker, context } = setup();
    const writer = new RingWriter(fromBroker[0]!);
    const reader = new RingReader(fromBroker[0]!);
    const now = Date.now() - 10_000;
    for (let tick = 0; tick <= 40; tick++) {
      writer.tryWrite(new Uint8Array(100));
      writer.tryWrite(new Uint8Array(100));
      reader.next(); // one read per look: always something unread, always progress
      reader.release();
      monitor.sample(now + tick * 250);
    }
    assert.equal((health(context).body as Body).status, 'ok');
  });

  test("an overflow whose oldest record waits too long (a wedged link) is degraded too: the broker's, and a shard's own", () => {
    const { table, monitor, brokerOverflow, context } = setup();
    const now = Date.now();
    Object.assign(brokerOverflow, { bytes: 3_000_000, since: now - 7000 });
    monitor.sample(now);
    let body = health(context).body as Body;
    assert.equal(body.status, 'degraded');
    assert.equal(body.shards.list[1]!.links.from_broker!.backlog_bytes, 3_000_000);
    Object.assign(brokerOverflow, { bytes: 0, since: 0 });
    monitor.sample(now);
    table.setLinkOverflow(0, Link.TO_SHARDS, 500, now - 6000);
    body = health(context).body as Body;
    assert.equal(body.status, 'degraded');
    assert.equal(body.shards.list[0]!.links.to_shards!.backlog_bytes, 500);
    table.forgetLinks(0); // the shard died: its writers' figures are void
    assert.equal((health(context).body as Body).status, 'ok');
  });

  test('a look says whether anything waits (the monitor looks every 250 ms then, every second while all is empty)', () => {
    const { monitor, fromBroker, brokerOverflow } = setup();
    const now = Date.now();
    assert.equal(monitor.sample(now), false, 'every ring empty');
    const reader = new RingReader(fromBroker[0]!);
    new RingWriter(fromBroker[0]!).tryWrite(new Uint8Array(100));
    assert.equal(monitor.sample(now), true, 'unread bytes');
    reader.next();
    reader.release();
    assert.equal(monitor.sample(now), false, 'read since');
    Object.assign(brokerOverflow, { bytes: 100, since: now });
    assert.equal(monitor.sample(now), true, "the broker's overflow");
  });

  test('a ring to a shard that is down is not stuck: nobody will read it, its successor discards it', () => {
    const { table, monitor, fromBroker, context } = setup();
    new RingWriter(fromBroker[1]!).tryWrite(new Uint8Array(100));
    table.setStatus(1, ShardStatus.DOWN);
    const now = Date.now();
    monitor.sample(now - 10_000);
    monitor.sample(now);
    const body = health(context).body as Body;
    assert.equal(body.status, 'degraded', 'a shard is down');
    assert.equal(body.shards.stuck_links, 0);
  });
});

describe('a backlog toward the broker, now or since a time (what excuses a missed ack deadline)', () => {
  test('backed up now; after the drain is published, still seen since any time before it, not since after it', () => {
    const table = new ShardTable(createShardTable(1));
    const before = Date.now() - 1;
    assert.equal(table.linkBackedUpSince(0, Link.TO_BROKER, Infinity), false, 'never backed up');
    assert.equal(table.linkBackedUpSince(0, Link.TO_BROKER, 0), false);
    table.setLinkOverflow(0, Link.TO_BROKER, 20_000, Date.now());
    assert.equal(table.linkBackedUpSince(0, Link.TO_BROKER, Infinity), true, 'backed up now');
    table.setLinkOverflow(0, Link.TO_BROKER, 0, 0); // the publication that shows the drain
    assert.equal(table.linkBackedUpSince(0, Link.TO_BROKER, Infinity), false, 'not now');
    assert.equal(table.linkBackedUpSince(0, Link.TO_BROKER, before), true, 'but since before the drain');
    assert.equal(table.linkBackedUpSince(0, Link.TO_BROKER, Date.now() + 1), false, 'not since after it');
    table.setLinkOverflow(0, Link.TO_BROKER, 0, 0); // an empty one again moves nothing
    assert.equal(table.linkBackedUpSince(0, Link.TO_BROKER, Date.now() + 1), false);
  });
});
