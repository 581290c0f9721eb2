/**
 * A PUMP's hand-out held for another node's route record (record-waits.ts) when the pumping
 * node is cut off from Redis for longer than the wait's bound (a command_timeout, 5 s): the
 * hand-out ran at the bound with Redis out of reach, its records to the user's other nodes
 * failed, and those nodes' connections got the message at its ack deadline (3 of 3 runs on
 * 2026-12-08; before the records waited, e0ce84a^, 2 came before 1 there, 2 of 2). Now a hand-out whose
 * wait ends in an outage runs when Redis answers (the rescan). Set up as
 * cluster-route-pump-order.test.ts, the routing node's commands held 1.5 s by one proxy, the
 * pumping node behind another, which the test cuts for 6 s.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { sleep } from './helpers/broker.js';
import { unreadData } from './helpers/messaging.js';
import { announceSkip, nodeConfig, startPrivateRedis, type PrivateRedis } from './helpers/redis.js';
import { ROUTE_PUMP_WINDOW as WINDOW, routeThenWait } from './helpers/route-pump.js';
import { startProcess, type ServerProcess } from './helpers/server.js';
import { tcpProxy, type TcpProxy } from './helpers/tcp-proxy.js';

const skip = announceSkip('cluster-record-wait-outage.test');

describe("a PUMP's hand-out held for a record as its node is cut off", { skip, timeout: 60_000 }, () => {
  let redis: PrivateRedis;
  let slow: TcpProxy;
  let cut: TcpProxy;
  const nodes: ServerProcess[] = [];
  before(async () => {
    redis = await startPrivateRedis();
    slow = await tcpProxy(redis.port);
    cut = await tcpProxy(redis.port);
    for (const url of [`redis://127.0.0.1:${slow.port}`, `redis://127.0.0.1:${cut.port}`, redis.url]) nodes.push(await startProcess(nodeConfig(url, 'wo:', 1, WINDOW)));
  });
  after(async () => {
    for (const node of nodes) if (node.child.exitCode === null) await node.stop('SIGKILL');
    await slow?.close();
    await cut?.close();
    await redis?.stop();
  });

  test("the user's connection on another node gets what the PUMP claimed once the pumping node is back", async () => {
    const [routing, pumping, watching] = nodes as [ServerProcess, ServerProcess, ServerProcess];
    const { reader, watcher, sender, m0 } = await routeThenWait({ routing: routing.port, pumping: pumping.port, watching: watching.port }, slow, 1500);
    // The ack pumps 2, held behind the record of 1; then the pumping node loses Redis past the bound.
    reader.send({ op: 'ack', id: m0.id });
    await sleep(300);
    cut.refuse = true;
    cut.cut();
    await sleep(6000);
    cut.refuse = false;
    for (let i = 0; i < 100 && unreadData(watcher).length < 2; i++) await sleep(100);
    assert.deepEqual(unreadData(watcher), [1, 2], 'the watcher got 1, then 2, within 10 s of the outage');
    slow.delayUpstreamMs = 0;
    for (const client of [reader, watcher, sender]) client.close();
  });
});
