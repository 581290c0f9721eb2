/**
 * The node's side of presence events in cluster mode (src/cluster/presence-events.ts), without
 * Redis: the records a group's channel carries, coalesced over the window for this node's
 * watchers; malformed records refused whole.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PresenceEvents } from '../src/cluster/presence-events.js';
import { sleep } from './helpers/broker.js';

const WINDOW_MS = 30;

function events(maxList = 1000, maxFrameBytes = 1024 * 1024): { events: PresenceEvents; frames: Array<{ group: string; joins: string[]; leaves: string[] }> } {
  const frames: Array<{ group: string; joins: string[]; leaves: string[] }> = [];
  const events = new PresenceEvents({
    maxList,
    windowMs: WINDOW_MS,
    maxFrameBytes,
    emit: (group, frame) => {
      const parsed = JSON.parse(frame) as { group: string; joins: string[]; leaves: string[] };
      frames.push({ group: parsed.group, joins: parsed.joins, leaves: parsed.leaves });
    },
  });
  return { events, frames };
}

test('one window: net joins and leaves, a user in and out again makes nothing', async () => {
  const { events: e, frames } = events();
  e.watch('g', 1);
  assert.equal(e.received('g', '+ann\n+bob'), true);
  assert.equal(e.received('g', '-bob'), true);
  assert.equal(e.received('g', '+cid'), true);
  assert.equal(e.received('g', '-dan'), true);
  await sleep(WINDOW_MS * 3);
  assert.deepEqual(frames, [{ group: 'g', joins: ['ann', 'cid'], leaves: ['dan'] }]);
  // A user who left and came back within the next window is no news either.
  e.received('g', '-ann\n+ann');
  await sleep(WINDOW_MS * 3);
  assert.equal(frames.length, 1);
  e.stop();
});

test('only groups watched here are kept and told; a watcher gone during the window hears nothing', async () => {
  const { events: e, frames } = events();
  assert.equal(e.received('unwatched', '+ann'), true);
  e.watch('g', 1);
  e.watch('g', 1);
  e.received('g', '+ann');
  e.watch('g', -1);
  e.watch('g', -1);
  await sleep(WINDOW_MS * 3);
  assert.deepEqual(frames, []);
  e.stop();
});

test('at most max_list names an event', async () => {
  const { events: e, frames } = events(2);
  e.watch('g', 1);
  e.received('g', '+a\n+b\n+c\n-d\n-e');
  await sleep(WINDOW_MS * 3);
  assert.deepEqual(frames, [
    { group: 'g', joins: ['a', 'b'], leaves: [] },
    { group: 'g', joins: ['c'], leaves: ['d'] },
    { group: 'g', joins: [], leaves: ['e'] },
  ]);
  e.stop();
});

test('a malformed record is refused whole: no sign, a bad name, an empty entry', async () => {
  const { events: e, frames } = events();
  e.watch('g', 1);
  for (const record of ['', 'ann', '+', '+bad name', '+ok\n*bad', '+ok\n', '+"quoted"', '+' + 'x'.repeat(129)]) {
    assert.equal(e.received('g', record), false, JSON.stringify(record));
  }
  await sleep(WINDOW_MS * 3);
  assert.deepEqual(frames, []);
  e.stop();
});
