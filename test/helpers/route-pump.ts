/**
 * The set-up of the route-then-PUMP tests (cluster-route-pump-order, cluster-record-wait-drain):
 * a user with a window of 2 on a pumping node and a watching node, its sender on a routing node
 * behind the fixture's proxy; 0 delivered and still unacknowledged, then, the proxy holding the
 * routing node's commands `delayMs`, 1 routed (the window had room) and 2 left waiting (full).
 * The caller's ack of `m0` then has the pumping node PUMP 2 while the record of 1 is on its way.
 */
import assert from 'node:assert/strict';
import { sleep } from './broker.js';
import { member, type Frame, type TestClient } from './client.js';
import { nextMsgs } from './messaging.js';
import type { TcpProxy } from './tcp-proxy.js';

/** Deadlines minutes away (no redelivery explains what arrives); a window of 2. */
export const ROUTE_PUMP_WINDOW = { websocket: { delivery: { ack_timeout: 300, max_backoff: 300, max_inflight_per_user: 2 } } };

/** The three nodes, for clusterFixture: the routing one behind the fixture's proxy. */
export function routePumpNodes(prefix: string) {
  const node = { prefix, extra: ROUTE_PUMP_WINDOW };
  return { routing: { ...node, throughProxy: true }, pumping: node, watching: node } as const;
}

export interface RoutePump {
  reader: TestClient;
  watcher: TestClient;
  sender: TestClient;
  m0: Frame;
}

export async function routeThenWait(ports: { routing: number; pumping: number; watching: number }, proxy: TcpProxy, delayMs: number): Promise<RoutePump> {
  const reader = await member(ports.pumping, 'reader');
  // The PUMP's records reach this one's node from the pumping node, the route's from the routing node.
  const watcher = await member(ports.watching, 'reader');
  const sender = await member(ports.routing, 'sender');
  await sleep(300);
  sender.send({ op: 'send', to: 'reader', data: 0, ref: 'r0' });
  const [m0] = await nextMsgs(reader, 1);
  assert.equal(m0!.data, 0);
  assert.equal((await nextMsgs(watcher, 1))[0]!.data, 0);
  proxy.delayUpstreamMs = delayMs;
  // 1 is routed (the window had room for it), 2 waits: the window is full.
  sender.send({ op: 'send', to: 'reader', data: 1, ref: 'r1' });
  sender.send({ op: 'send', to: 'reader', data: 2, ref: 'r2' });
  for (const ref of ['r1', 'r2']) assert.equal((await sender.next((f) => f.ref === ref, 15_000)).op, 'ack');
  return { reader, watcher, sender, m0: m0! };
}

/** The three nodes' ports. */
export function portsOf(nodes: Record<'routing' | 'pumping' | 'watching', { port: number }>): { routing: number; pumping: number; watching: number } {
  return { routing: nodes.routing.port, pumping: nodes.pumping.port, watching: nodes.watching.port };
}
