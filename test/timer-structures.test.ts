/**
 * The broker's two timer structures (src/broker/heap.ts, deadlines.ts): whatever order items
 * come and go in, what falls due comes out in time order, and what was removed never comes out
 * nor stays behind.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { DeadlineLists, type Timed } from '../src/broker/deadlines.js';
import { TimerHeap, type HeapItem } from '../src/broker/heap.js';

/** A small deterministic generator: a failing case reproduces. */
function random(seed: number): () => number {
  let s = seed >>> 0;
  return () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
}

describe('TimerHeap', () => {
  test('pops in time order, never what was removed, and holds nothing once every item is removed', () => {
    for (let seed = 1; seed <= 20; seed++) {
      const next = random(seed);
      const heap = new TimerHeap<HeapItem & { name: number }>();
      const live = new Set<HeapItem & { name: number }>();
      for (let i = 0; i < 500; i++) {
        const item = { heapTime: 0, heapIndex: -1, name: i };
        heap.push(item, Math.floor(next() * 1000));
        live.add(item);
        if (next() < 0.4) {
          const victim = [...live][Math.floor(next() * live.size)]!;
          heap.remove(victim);
          heap.remove(victim); // twice: nothing
          live.delete(victim);
        }
      }
      assert.equal(heap.size, live.size);
      const popped: number[] = [];
      for (let item = heap.popDue(500); item; item = heap.popDue(500)) {
        assert.ok(live.delete(item), `seed ${seed}: a removed or popped item came out`);
        popped.push(item.heapTime);
      }
      assert.deepEqual(popped, [...popped].sort((a, b) => a - b), `seed ${seed}: in order`);
      assert.ok([...live].every((item) => item.heapTime > 500), `seed ${seed}: nothing due left behind`);
      for (const item of live) heap.remove(item);
      assert.deepEqual([heap.size, heap.nextTime()], [0, Infinity]);
    }
  });

  test('pushing an item it holds moves it to its new time', () => {
    const heap = new TimerHeap<HeapItem>();
    const a = { heapTime: 0, heapIndex: -1 };
    const b = { heapTime: 0, heapIndex: -1 };
    heap.push(a, 10);
    heap.push(b, 20);
    heap.push(a, 30);
    assert.equal(heap.size, 2);
    assert.equal(heap.popDue(100), b);
    assert.equal(heap.popDue(100), a);
  });
});

describe('DeadlineLists', () => {
  interface Item extends Timed {
    name: string;
  }
  const item = (name: string): Item => ({ name, deadline: 0, prev: null, next: null, list: -1 });

  test('an item added with an earlier deadline than the tail (a take-over restoring older messages) takes its place in order', () => {
    const lists = new DeadlineLists<Item>();
    const live = [item('live-1'), item('live-2')];
    lists.add(live[0]!, 0, 1000);
    lists.add(live[1]!, 0, 1100);
    // Restored oldest first, all older than the live ones, one in between.
    const restored = [item('r-100'), item('r-200'), item('r-300'), item('r-1050')];
    for (const [i, r] of restored.entries()) lists.add(r, 0, [100, 200, 300, 1050][i]!);
    lists.add(item('live-3'), 0, 1200);
    assert.equal(lists.nextDeadline(), 100);
    assert.deepEqual(lists.takeDue(250).map((i) => i.name), ['r-100', 'r-200']);
    lists.remove(live[0]!);
    assert.deepEqual(lists.takeDue(2000).map((i) => i.name), ['r-300', 'r-1050', 'live-2', 'live-3']);
    assert.equal(lists.nextDeadline(), Infinity);
  });

  test('an item taken out and put back into the list it left comes out again (a capped wait: a redelivery past max_backoff)', () => {
    const lists = new DeadlineLists<Item>();
    const only = item('only');
    lists.add(only, 0, 100);
    assert.deepEqual(lists.takeDue(100).map((i) => i.name), ['only']);
    lists.add(only, 0, 200);
    assert.equal(lists.nextDeadline(), 200);
    assert.deepEqual(lists.takeDue(200).map((i) => i.name), ['only']);
    // And after a removal.
    lists.add(only, 0, 300);
    lists.remove(only);
    lists.add(only, 0, 400);
    assert.deepEqual(lists.takeDue(Infinity).map((i) => i.name), ['only']);
  });

  test('random adds, re-adds and removes: every list stays in deadline order', () => {
    for (let seed = 1; seed <= 20; seed++) {
      const next = random(seed);
      const lists = new DeadlineLists<Item>();
      const live = new Set<Item>();
      const every: Item[] = [];
      for (let i = 0; i < 300; i++) {
        // Now and then an item seen before (held, removed or taken), as a redelivery puts back.
        const it = every.length > 0 && next() < 0.3 ? every[Math.floor(next() * every.length)]! : item(String(i));
        if (it.name === String(i)) every.push(it);
        lists.add(it, Math.floor(next() * 3), Math.floor(next() * 1000));
        live.add(it);
        if (next() < 0.2) for (const taken of lists.takeDue(Math.floor(next() * 300))) live.delete(taken);
        if (next() < 0.3) {
          const victim = [...live][Math.floor(next() * live.size)]!;
          lists.remove(victim);
          live.delete(victim);
        }
      }
      const out = new Set<Item>();
      for (let list = 0; list < 3; list++) {
        const due = lists.takeDue(Infinity, list, list + 1);
        for (const it of due) out.add(it);
        const deadlines = due.map((i) => i.deadline);
        assert.deepEqual(deadlines, [...deadlines].sort((a, b) => a - b), `seed ${seed}, list ${list}`);
      }
      assert.equal(lists.nextDeadline(), Infinity, `seed ${seed}: every live item came out`);
      assert.deepEqual(out, live, `seed ${seed}: exactly the live items came out`);
    }
  });
});
