/**
 * The byte scanners the load generators read frames with (tools/lib/frame-scan.ts), through
 * the broadcast benchmark's stamp reader; the load tester's marker reader is in
 * loadtest-units.test.ts. Each reader must agree with its JSON.parse twin.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FrameKind, frameKind, readNumber, numberEnd } from '../tools/lib/frame-scan.js';
import { parseDeliveries, sameStamps, verifyDeliveries } from '../tools/bench/lib/deliveries.js';

const bytes = (value: unknown): Buffer => Buffer.from(JSON.stringify(value));

function fastStamps(frame: Buffer): { kind: FrameKind; stamps: number[][] } {
  const stamps: number[][] = [];
  const kind = parseDeliveries(frame, (p, s, t) => stamps.push([p, s, t]));
  return { kind, stamps };
}

describe('frame scanning', () => {
  it('tells msg and batch frames from the rest by their op', () => {
    assert.equal(frameKind(bytes({ op: 'msg', id: '1', data: {} })), FrameKind.Msg);
    assert.equal(frameKind(bytes({ op: 'batch', msgs: [] })), FrameKind.Batch);
    assert.equal(frameKind(bytes({ op: 'welcome', user: 'msg' })), FrameKind.Other);
    assert.equal(frameKind(bytes({ op: 'msgs' })), FrameKind.Other);
    assert.equal(frameKind(Buffer.from('{"op":"ms')), FrameKind.Other);
  });

  it('reads numbers as JSON.parse does: sign, fraction, exponent, and where they end', () => {
    for (const text of ['0', '7', '-3', '1718000000000.125', '123456789012345', '1e3', '-2.5E-3']) {
      const frame = Buffer.from(`${text},`);
      assert.equal(readNumber(frame, 0, frame.length), JSON.parse(text), text);
      assert.equal(numberEnd, text.length, text);
    }
    assert.ok(Number.isNaN(readNumber(Buffer.from('"x"'), 0, 3)));
  });

  it('finds every stamp of a msg and a batch, in any key order, as the JSON.parse twin does', () => {
    const t = 1_718_000_000_000.25;
    const frames = [
      bytes({ op: 'msg', id: 'a', from: 'u1', group: 'g0', data: { t, s: 4, p: 2 }, pri: 1, ts: 1 }),
      bytes({ op: 'batch', msgs: [{ op: 'msg', id: 'b', data: { p: 1, s: 0, t }, ts: 2 }, { data: { s: 9, t: t + 1, p: 0 }, op: 'msg', id: 'c' }] }),
      // not a stamp: a key missing, and a `ts` that is not `t`
      bytes({ op: 'msg', id: 'd', data: { ts: 5, s: 1, p: 1 }, ts: 3 }),
    ];
    for (const frame of frames) {
      const fast = fastStamps(frame);
      const reference = verifyDeliveries(frame)!;
      assert.ok(sameStamps(fast.stamps, reference), `${frame}: ${JSON.stringify(fast.stamps)} vs ${JSON.stringify(reference)}`);
    }
    assert.deepEqual(fastStamps(frames[0]!), { kind: FrameKind.Msg, stamps: [[2, 4, t]] });
    assert.equal(fastStamps(frames[1]!).kind, FrameKind.Batch);
    assert.equal(fastStamps(frames[1]!).stamps.length, 2);
    assert.deepEqual(fastStamps(frames[2]!).stamps, []);
  });

  it('leaves other frames to JSON.parse', () => {
    const frame = bytes({ op: 'joined', group: 'g1', ref: 'j1', data: { t: 1, s: 2, p: 3 } });
    assert.deepEqual(fastStamps(frame), { kind: FrameKind.Other, stamps: [] });
    assert.equal(verifyDeliveries(frame), null);
  });
});
