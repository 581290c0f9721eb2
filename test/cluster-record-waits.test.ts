/**
 * RecordWaits (src/cluster/record-waits.ts): a PUMP's hand-out held for other nodes' records
 * runs once, when the last of them arrives or when the bound passes, whichever comes first.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { sleep } from './helpers/broker.js';
import { RecordWaits } from '../src/cluster/record-waits.js';

test('runs once every record it waits for arrived, and not again at the bound', async () => {
  const waits = new RecordWaits();
  let runs = 0;
  waits.wait(['a', 'b'], 100, () => runs++);
  waits.arrived('a');
  waits.arrived('x');
  assert.equal(runs, 0, 'b is still on its way');
  waits.arrived('b');
  assert.equal(runs, 1);
  waits.arrived('b');
  await sleep(150);
  assert.equal(runs, 1);
});

test('runs at the bound when a record never comes; a record after that runs nothing', async () => {
  const waits = new RecordWaits();
  let runs = 0;
  waits.wait(['a'], 50, () => runs++);
  await sleep(20);
  assert.equal(runs, 0);
  await sleep(80);
  assert.equal(runs, 1);
  waits.arrived('a');
  assert.equal(runs, 1);
});

test('two waits for one record both run when it arrives', () => {
  const waits = new RecordWaits();
  const ran: string[] = [];
  waits.wait(['a'], 1000, () => ran.push('first'));
  waits.wait(['a', 'b'], 1000, () => ran.push('second'));
  waits.arrived('a');
  assert.deepEqual(ran, ['first']);
  waits.arrived('b');
  assert.deepEqual(ran, ['first', 'second']);
});

test('counts the hand-outs held, and settles once the last one ran', async () => {
  const waits = new RecordWaits();
  const ran: string[] = [];
  assert.equal(waits.holding, 0);
  await waits.settled(); // none held: at once
  waits.wait(['a'], 1000, () => ran.push('a'));
  waits.wait(['b'], 30, () => ran.push('b'));
  assert.equal(waits.holding, 2);
  const settled = waits.settled().then(() => ran.push('settled'));
  waits.arrived('a');
  assert.equal(waits.holding, 1);
  await Promise.all([settled, sleep(100)]); // the bound's timer is unref'd: something must keep the loop up
  assert.deepEqual(ran, ['a', 'b', 'settled'], 'b at its bound, then settled');
  assert.equal(waits.holding, 0);
});
