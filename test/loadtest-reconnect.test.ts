/**
 * The load tester's reconnect scenario: its order check on its own, then the scenario against
 * the real server it starts (whose config keeps history for the scenario's groups).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DEFAULT_SCENARIOS_FILE } from '../tools/loadtest/cli.js';
import { checkJoined, checkMsg, newOrderState, noRecovery, orderViolations, sinceOf } from '../tools/loadtest/order-check.js';
import { runLoadTest } from '../tools/loadtest/runner.js';
import { applyOverrides, loadScenarios, parseScenarios, selectScenarios } from '../tools/loadtest/scenarios.js';
import { assertSaneRun } from './fixtures/loadtest-sanity.js';

describe('the reconnect scenario', () => {
  it('the order check counts in-order messages, skips, repeats and recoveries that end elsewhere', () => {
    const state = newOrderState();
    const r = noRecovery();
    assert.equal(sinceOf(state), undefined);
    checkJoined(state, { offset: 10, epoch: 'e' }, false, r);
    for (const offset of [11, 12, 14, 14, 13, 15]) checkMsg(state, offset, 'e', r);
    assert.deepEqual({ inOrder: r.inOrder, gaps: r.gaps, duplicates: r.duplicates }, { inOrder: 3, gaps: 1, duplicates: 2 });
    assert.deepEqual(sinceOf(state), { offset: 15, epoch: 'e' });
    // A replay of 16..17, then joined at 18: one recovery, ending elsewhere than the replay.
    checkMsg(state, 16, 'e', r);
    checkMsg(state, 17, 'e', r);
    checkJoined(state, { offset: 18, epoch: 'e', recovered: true }, true, r);
    assert.equal(r.mismatches, 1);
    // recovered: false starts over at the top, without counting what was missed as skipped.
    checkJoined(state, { offset: 40, epoch: 'f', recovered: false }, true, r);
    checkMsg(state, 41, 'f', r);
    assert.deepEqual({ recovered: r.recovered, notRecovered: r.notRecovered, gaps: r.gaps }, { recovered: 1, notRecovered: 1, gaps: 1 });
    assert.equal(orderViolations(r), 1 + 2 + 1);
  });

  it('needs its reconnect section, and names a bad key in it', () => {
    assert.throws(() => parseScenarios({ scenarios: { r: { kind: 'reconnect', connections: 10, duration_s: 1 } } }), /kind "reconnect" needs a "reconnect" section/);
    assert.throws(
      () => parseScenarios({ scenarios: { r: { kind: 'reconnect', connections: 10, duration_s: 1, reconnect: { at_s: 1, share: 0.5, offline: 1 } } } }),
      /scenarios\.r\.reconnect: unrecognized key "offline"/,
    );
  });

  it('against the real server: dropped users come back, recover with since, and every user gets each message once, in order', async () => {
    const [spec] = selectScenarios(loadScenarios(DEFAULT_SCENARIOS_FILE), { names: ['reconnect'] }).map((s) =>
      applyOverrides(s, { durationS: 6, warmupS: 1, drainS: 1, connections: 100 }),
    );
    assert.equal(spec!.kind, 'reconnect');
    assert.ok(spec!.reconnect!.atS < 6 && spec!.reconnect!.offlineS <= 2, 'the drop and the return fall inside the shortened window');
    const r = await runLoadTest({ scenarios: [spec!], threads: 2 });
    assertSaneRun(r);
    const s = r.scenarios[0]!;
    const rec = s.recovery!;
    assert.ok(rec.drops >= 10, `a fifth of 100 connections dropped (${rec.drops})`);
    assert.equal(rec.rejoins, rec.drops, 'every dropped user came back');
    assert.equal(rec.recovered, rec.rejoins, 'and recovered');
    assert.ok(rec.inOrder > 0);
    assert.equal(orderViolations(rec), 0, JSON.stringify(rec));
    assert.equal(rec.exactlyOnce, true);
    assert.equal(s.delivery.duplicates, 0);
  });
});
