/**
 * History groups where the shard link is the edge: a leave still waiting for the broker, and a
 * replay larger than the link's overflow allowance. Real 2-shard servers, clients on real sockets.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { member, onShard, type Frame } from './helpers/client.js';
import { msgsOf } from './helpers/history.js';
import { startProcess, testConfig } from './helpers/server.js';

describe('history groups at the edge of the shard link', () => {
  test('a member that leaves and joins again in one turn, while 300 pubs flow from another shard, misses nothing before its left (40 rounds)', async () => {
    const server = await startProcess(testConfig({ websocket: { history: [{ pattern: 'room.*', size: 100_000, ttl: 0 }] } }));
    try {
      const group = 'room.gap';
      const publisher = await onShard(1, (i) => member(server.port, `pub${i}`, [group]));
      // The only member on its shard: counted out of the interest table before its left, the broker skipped the shard.
      const leaver = await onShard(0, (i) => member(server.port, `leaver${i}`, [group]));
      const gaps: string[] = [];
      let next: number | null = null;
      let member_ = true;
      const seen = (f: Frame): void => {
        for (const m of msgsOf(f)) {
          const offset = m.offset as number;
          if (!member_) gaps.push(`${offset} while not a member`);
          else if (next !== null && offset !== next) gaps.push(`${offset} where ${next} was due`);
          next = offset + 1;
        }
        if (f.op === 'left') (member_ = false), (next = null);
        if (f.op === 'joined') (member_ = true), (next = (f.offset as number) + 1);
      };
      let n = 0;
      for (let round = 0; round < 40; round++) {
        for (let i = 0; i < 300; i++) publisher.send({ op: 'pub', group, data: { n: n++ } });
        await sleep(1 + (round % 4));
        leaver.send({ op: 'leave', group, ref: `l${round}` });
        leaver.send({ op: 'join', group, ref: `j${round}` });
        for (;;) {
          const f = await leaver.next(() => true);
          seen(f);
          if (f.op === 'joined' && f.ref === `j${round}`) break;
        }
      }
      assert.deepEqual(gaps, []);
      publisher.close();
      leaver.close();
    } finally {
      await server.stop();
    }
  });

  test('a replay larger than twice ring_overflow_bytes goes whole before its joined, or is not claimed as recovered (5 rounds)', async () => {
    const server = await startProcess(
      testConfig({
        websocket: {
          server: { max_payload: 16_384 },
          history: [{ pattern: 'room.*', size: 10_000, ttl: 0 }],
          // The smallest ring that max_payload allows, and a small overflow: 120 KB of replay is more than both.
          performance: { ring_bytes: 65_536, ring_overflow_bytes: 16_384 },
        },
      }),
    );
    try {
      const group = 'room.big';
      const publisher = await onShard(1, (i) => member(server.port, `pub${i}`, [group]));
      let n = 0;
      let recovered = 0;
      for (let round = 0; round < 5; round++) {
        const away = await onShard(0, (i) => member(server.port, `reader${round}-${i}`));
        away.send({ op: 'join', group, ref: 'first' });
        const first = await away.next((f) => f.op === 'joined');
        away.close();
        await away.closed;
        // 40 messages of 3 KB while the reader is away, published slowly: the link is idle when it comes back.
        for (let i = 0; i < 40; i++) {
          publisher.send({ op: 'pub', group, data: { n: n++, text: 'x'.repeat(3000) } });
          await sleep(3);
        }
        await sleep(200);
        const back = await onShard(0, (i) => member(server.port, `reader${round}-back${i}`));
        back.send({ op: 'join', group, ref: 'rejoin', since: { offset: first.offset, epoch: first.epoch } });
        const replayed: number[] = [];
        let joined: Frame;
        for (;;) {
          const f = await back.next(() => true);
          replayed.push(...msgsOf(f).map((m) => m.offset as number));
          if (f.op === 'joined') {
            joined = f;
            break;
          }
        }
        if (joined.recovered === true) {
          recovered++;
          const since = first.offset as number;
          assert.deepEqual(replayed, Array.from({ length: (joined.offset as number) - since }, (_, i) => since + 1 + i), `round ${round}: every missed message before joined`);
        }
        back.close();
      }
      assert.ok(recovered > 0, 'some rounds recovered: the replays were checked');
      publisher.close();
    } finally {
      await server.stop();
    }
  });
});
