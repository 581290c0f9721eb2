/**
 * The SDK on `ocs.v1.msgpack` against the real server: it offers msgpack first and JSON second,
 * so it works on a server of either kind; where the server speaks msgpack, group messages
 * (small, and large ones LZ4-compressed both ways), stored messages with their acks and
 * batches of a backlog all go through the client's own MessagePack and LZ4, next to a JSON
 * member of the same group. Skipped, saying so, on a server that picks JSON.
 */
import assert from 'node:assert/strict';
import { after, describe, test } from 'node:test';
import { until } from './helpers/messaging.js';
import { sdkClient } from './helpers/sdk.js';
import { startInProcess } from './helpers/server.js';

const server = await startInProcess();
const probe = sdkClient(server.port, { user: 'probe', encoding: 'msgpack' });
await probe.client.connect();
const speaksMsgpack = probe.client.encoding === 'msgpack';
await probe.client.close();
const skip = speaksMsgpack ? false : 'SKIPPED: this server answers ocs.v1.json to a client offering ocs.v1.msgpack (the server side of issue 11 is not merged)';
if (skip) process.stderr.write(`\n*** client-msgpack.test: ${skip} ***\n\n`);

describe('the SDK on ocs.v1.msgpack', { skip }, () => {
  after(() => server.close());

  test('group messages, small and LZ4-sized, between a msgpack and a JSON member', async () => {
    const packed = sdkClient(server.port, { user: 'packed', encoding: 'msgpack' });
    const plain = sdkClient(server.port, { user: 'plain' });
    await Promise.all([packed.client.connect(), plain.client.connect()]);
    assert.deepEqual([packed.client.encoding, plain.client.encoding], ['msgpack', 'json']);
    await Promise.all([packed.client.join('mixed'), plain.client.join('mixed')]);
    const big = { text: 'a long chat message '.repeat(500), list: Array.from({ length: 200 }, (_, i) => ({ i, neg: -i - 1, half: i / 2 })) };
    await packed.client.publish('mixed', { text: 'hi' });
    await packed.client.publish('mixed', big);
    await plain.client.publish('mixed', big);
    for (const rx of [packed, plain]) {
      const got = await rx.received(3);
      assert.deepEqual(got.map((m) => m.data), [{ text: 'hi' }, big, big]);
    }
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
});

if (skip) await server.close();
