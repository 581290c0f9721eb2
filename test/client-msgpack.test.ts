/**
 * The SDK on `ocs.v1.msgpack` against the real server: group messages (small, and large ones
 * LZ4-compressed in both directions), stored messages with their acks and the batches of a
 * backlog, presence, history pages and recovery on a re-join all go through the client's
 * MessagePack and the protocol's framing, next to a JSON member of the same group that sees
 * the same values.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import WebSocket from 'ws';
import type { WebSocketConstructor } from '../src/client/index.js';
import { MAX_DATA_DEPTH } from '../src/protocol/json-codec.js';
import { FLAG_LZ4 } from '../src/protocol/wire.js';
import { until } from './helpers/messaging.js';
import { nextOpen, sdkClient as makeClient, type RecordingClient } from './helpers/sdk.js';
import type { RunningServer } from '../src/index.js';
import { startInProcess } from './helpers/server.js';

/** `ws` recording the flags byte of every binary frame each way, to see LZ4 in use. */
function flagRecorder(): { WebSocket: WebSocketConstructor; sent: number[]; received: number[]; sockets: WebSocket[] } {
  const sent: number[] = [];
  const received: number[] = [];
  const sockets: WebSocket[] = [];
  class Recording extends WebSocket {
    constructor(url: string, protocols?: string | string[]) {
      super(url, protocols);
      sockets.push(this);
      // The client asks for ArrayBuffers (binaryType).
      this.on('message', (data: ArrayBuffer, isBinary: boolean) => isBinary && received.push(new Uint8Array(data)[0]!));
    }
    override send(data: unknown, ...rest: unknown[]): void {
      if (data instanceof Uint8Array) sent.push(data[0]!);
      (super.send as (...args: unknown[]) => void)(data, ...rest);
    }
  }
  return { WebSocket: Recording, sent, received, sockets };
}

describe('the SDK on ocs.v1.msgpack', () => {
  let server: RunningServer;
  /** Every client made, closed at the end even when a test failed half-way (a client left open keeps reconnecting). */
  const made: RecordingClient[] = [];
  const sdkClient = (...args: Parameters<typeof makeClient>): RecordingClient => {
    const client = makeClient(...args);
    made.push(client);
    return client;
  };
  before(async () => {
    server = await startInProcess({ websocket: { history: [{ pattern: 'kept.*', size: 100 }] } });
  });
  after(async () => {
    await Promise.all(made.map((c) => c.client.close()));
    await server.close();
  });

  test('group messages, small and LZ4-sized, between a msgpack and a JSON member', async () => {
    const wire = flagRecorder();
    const packed = sdkClient(server.port, { user: 'packed', encoding: 'msgpack', WebSocket: wire.WebSocket });
    const plain = sdkClient(server.port, { user: 'plain' });
    await Promise.all([packed.client.connect(), plain.client.connect()]);
    assert.deepEqual([packed.client.encoding, plain.client.encoding], ['msgpack', 'json'], 'the server picks ocs.v1.msgpack when offered first');
    await Promise.all([packed.client.join('mixed'), plain.client.join('mixed')]);
    const big = { text: 'a long chat message '.repeat(500), list: Array.from({ length: 200 }, (_, i) => ({ i, neg: -i - 1, half: i / 2 })) };
    await packed.client.publish('mixed', { text: 'hi' });
    await packed.client.publish('mixed', big);
    await plain.client.publish('mixed', big);
    for (const rx of [packed, plain]) {
      const got = await rx.received(3);
      assert.deepEqual(got.map((m) => m.data), [{ text: 'hi' }, big, big]);
    }
    assert.ok(wire.sent.includes(FLAG_LZ4) && wire.sent.includes(0), `the client sent plain and compressed frames (${wire.sent.join()})`);
    assert.ok(wire.received.includes(FLAG_LZ4) && wire.received.includes(0), `the server sent plain and compressed frames (${wire.received.join()})`);
    await Promise.all([packed.client.close(), plain.client.close()]);
  });

  test('stored messages arrive as a batch after a reconnect and are acknowledged on msgpack', async () => {
    for (let n = 1; n <= 20; n++) await server.send('packed-rx', { n });
    const ackedBefore = server.messagingStats().acked;
    const rx = sdkClient(server.port, { user: 'packed-rx', encoding: 'msgpack' });
    await rx.client.connect();
    const got = await rx.received(20);
    assert.deepEqual(got.map((m) => (m.data as { n: number }).n), Array.from({ length: 20 }, (_, i) => i + 1));
    await until(() => (server.messagingStats().acked >= ackedBefore + 20 ? true : undefined), 'the acks');
    await rx.client.close();
  });

  test('data nested as deep as a sender may nest it reaches a msgpack client inside a backlog `batch` and a `history` page', async () => {
    // Two levels deeper there than in a `msg`: a client that decoded them with the client frames' limit dropped them whole.
    const nested = (levels: number): unknown => (levels === 0 ? 'leaf' : [nested(levels - 1)]);
    const deepest = nested(MAX_DATA_DEPTH);
    await assert.rejects(async () => server.send('deep-rx', nested(MAX_DATA_DEPTH + 1)), /nested deeper/);
    for (const data of [{ n: 1 }, deepest, { n: 2 }]) await server.send('deep-rx', data);
    const rx = sdkClient(server.port, { user: 'deep-rx', encoding: 'msgpack' });
    const tx = sdkClient(server.port, { user: 'deep-tx' });
    await Promise.all([rx.client.connect(), tx.client.connect()]);
    assert.deepEqual((await rx.received(3)).map((m) => m.data), [{ n: 1 }, deepest, { n: 2 }]);
    await Promise.all([rx.client.join('kept.deep'), tx.client.join('kept.deep')]);
    await tx.client.publish('kept.deep', deepest);
    await rx.received(4);
    assert.deepEqual((await rx.client.history('kept.deep')).msgs.map((m) => m.data), [deepest]);
    assert.deepEqual(rx.errors, []);
    await Promise.all([rx.client.close(), tx.client.close()]);
  });

  test('presence, history pages and joined positions read the same on msgpack as on JSON', async () => {
    const packed = sdkClient(server.port, { user: 'mp-ann', encoding: 'msgpack' });
    const plain = sdkClient(server.port, { user: 'js-bob' });
    await Promise.all([packed.client.connect(), plain.client.connect()]);
    const [packedJoin, plainJoin] = await Promise.all([packed.client.join('kept.both', { presence: true }), plain.client.join('kept.both')]);
    assert.equal(packedJoin.history, true);
    assert.equal(plainJoin.position!.epoch, packedJoin.position!.epoch);
    for (let n = 1; n <= 4; n++) await plain.client.publish('kept.both', { n, __proto__key: JSON.parse('{"__proto__":{"x":1}}') as unknown });
    await packed.received(4);
    assert.deepEqual(packed.messages.map((m) => m.offset), [1, 2, 3, 4].map((n) => packedJoin.position!.offset + n));
    const [packedPage, plainPage] = await Promise.all([packed.client.history('kept.both', { limit: 3 }), plain.client.history('kept.both', { limit: 3 })]);
    assert.deepEqual(packedPage, plainPage);
    assert.equal(packedPage.more, true);
    const proto = (packedPage.msgs[0]!.data as { __proto__key: object }).__proto__key;
    assert.deepEqual(Object.keys(proto), ['__proto__'], 'a key __proto__ arrives as JSON.parse makes it, not renamed');
    await until(async () => ((await packed.client.presence('kept.both')).total.users === 2 ? true : undefined), 'both users present');
    const [packedWho, plainWho] = await Promise.all([packed.client.presence('kept.both'), plain.client.presence('kept.both')]);
    assert.deepEqual([...packedWho.users!.keys()].sort(), ['js-bob', 'mp-ann']);
    assert.deepEqual(packedWho, plainWho);
    await Promise.all([packed.client.close(), plain.client.close()]);
  });

  test('a dropped msgpack connection re-joins with since and recovers what was published meanwhile, once each', async () => {
    const wire = flagRecorder();
    const rx = sdkClient(server.port, { user: 'mp-rx', encoding: 'msgpack', WebSocket: wire.WebSocket, reconnect: { initialMs: 300 } });
    const rejoins: Array<{ recovered?: boolean }> = [];
    rx.client.on('joined', (j) => j.rejoin && rejoins.push(j));
    const tx = sdkClient(server.port, { user: 'mp-tx' });
    await Promise.all([rx.client.connect(), tx.client.connect()]);
    await Promise.all([rx.client.join('kept.drop'), tx.client.join('kept.drop')]);
    await tx.client.publish('kept.drop', { n: 1 });
    await rx.received(1);
    // Another client's messages while this one is away (it waits 150-300 ms to reconnect); a large one comes back compressed.
    const reopened = nextOpen(rx.client);
    wire.sockets.at(-1)!.terminate();
    for (let n = 2; n <= 6; n++) await tx.client.publish('kept.drop', { n, text: 'x'.repeat(n === 4 ? 5000 : 10) });
    await reopened;
    const got = await rx.received(6);
    assert.deepEqual(got.map((m) => (m.data as { n: number }).n), [1, 2, 3, 4, 5, 6]);
    assert.deepEqual(rx.gaps, []);
    assert.deepEqual(rejoins.map((j) => j.recovered), [true]);
    assert.equal(rx.client.stats.duplicates, 0);
    assert.ok(wire.received.includes(FLAG_LZ4), 'the large replayed message came compressed');
    await Promise.all([rx.client.close(), tx.client.close()]);
  });
});
