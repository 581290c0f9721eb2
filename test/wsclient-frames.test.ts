/**
 * The raw client's frame parser (tools/wsclient/frame-parser.ts) without sockets: server
 * frames fed whole, pipelined, byte by byte and cut at random points, through one reused read
 * buffer as the client feeds it, must give the same messages, control frames and errors.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FrameParser, type FrameSink } from '../tools/wsclient/frame-parser.js';

type Event =
  | { kind: 'message'; binary: boolean; payload: string }
  | { kind: 'ping' | 'pong'; payload: string }
  | { kind: 'close'; code: number; reason: string }
  | { kind: 'error'; code: number; problem: string };

interface FrameSpec {
  opcode: number;
  payload?: Buffer | string;
  fin?: boolean;
  /** A 4-byte masking key: servers must not mask, so this makes a bad frame. */
  mask?: Buffer;
  /** Bits 0x70 of the first byte. */
  rsv?: number;
  /** Claim this length instead of the payload's (only with a payload the parser never reaches). */
  claimLength?: number;
}

const TEXT = 0x1;
const BINARY = 0x2;
const CONTINUATION = 0x0;
const CLOSE = 0x8;
const PING = 0x9;
const PONG = 0xa;

/** One server frame, its length in the shortest form (7-bit, 16-bit or 64-bit). */
function frame(spec: FrameSpec): Buffer {
  const payload = typeof spec.payload === 'string' ? Buffer.from(spec.payload) : (spec.payload ?? Buffer.alloc(0));
  const length = spec.claimLength ?? payload.length;
  const b0 = ((spec.fin ?? true) ? 0x80 : 0) | (spec.rsv ?? 0) | spec.opcode;
  const maskBit = spec.mask ? 0x80 : 0;
  let head: Buffer;
  if (length < 126) head = Buffer.from([b0, maskBit | length]);
  else if (length < 65536) head = Buffer.from([b0, maskBit | 126, length >> 8, length & 0xff]);
  else {
    head = Buffer.alloc(10);
    head[0] = b0;
    head[1] = maskBit | 127;
    head.writeUInt32BE(Math.floor(length / 0x100000000), 2);
    head.writeUInt32BE(length >>> 0, 6);
  }
  if (!spec.mask) return Buffer.concat([head, payload]);
  const masked = Buffer.from(payload.map((byte, i) => byte ^ spec.mask![i % 4]!));
  return Buffer.concat([head, spec.mask, masked]);
}

function closePayload(code: number, reason = ''): Buffer {
  const out = Buffer.alloc(2 + Buffer.byteLength(reason));
  out.writeUInt16BE(code);
  out.write(reason, 2);
  return out;
}

/** Bytes whose every position differs, so an offset bug changes the content. */
function pattern(size: number): Buffer {
  const out = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) out[i] = (i * 31 + (i >>> 8)) & 0xff;
  return out;
}

/** A small deterministic PRNG (mulberry32), so a failing cut is reproducible from its seed. */
function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Feeds `bytes` in pieces of the given sizes through one reused read buffer, scribbled over
 * after every push, as the client's shared read buffer is by the next read. Payloads are
 * recorded (as hex, to compare) during the callbacks, the only time they are valid.
 */
function feed(bytes: Buffer, pieces: number[], maxPayload = 1 << 20): Event[] {
  const events: Event[] = [];
  const hex = (b: Buffer): string => b.toString('hex');
  const sink: FrameSink = {
    onMessage: (payload, binary) => void events.push({ kind: 'message', binary, payload: hex(payload) }),
    onPing: (payload) => void events.push({ kind: 'ping', payload: hex(payload) }),
    onPong: (payload) => void events.push({ kind: 'pong', payload: hex(payload) }),
    onClose: (code, reason) => void events.push({ kind: 'close', code, reason }),
    onProtocolError: (code, problem) => void events.push({ kind: 'error', code, problem }),
  };
  const parser = new FrameParser(sink, maxPayload);
  const read = Buffer.alloc(pieces.reduce((max, size) => Math.max(max, size), 1) + 16);
  let at = 0;
  for (const size of pieces) {
    // Not always at offset 0 of the read buffer: the client starts after a handshake's tail.
    const offset = at % 7;
    bytes.copy(read, offset, at, at + size);
    parser.push(read, offset, offset + size);
    read.fill(0xee);
    at += size;
  }
  assert.equal(at, bytes.length, 'the pieces cover the input');
  return events;
}

const whole = (bytes: Buffer): number[] => [bytes.length];
const byteByByte = (bytes: Buffer): number[] => Array.from({ length: bytes.length }, () => 1);
function randomCuts(bytes: Buffer, seed: number): number[] {
  const next = random(seed);
  const pieces: number[] = [];
  for (let left = bytes.length; left > 0; ) {
    // Mostly small pieces (headers cut in every place), sometimes large ones (payloads whole).
    const size = Math.min(left, 1 + Math.floor(next() < 0.7 ? next() * 16 : next() * 70_000));
    pieces.push(size);
    left -= size;
  }
  return pieces;
}

/** The events of `bytes` fed whole; asserts every other way of cutting it gives the same. */
function eventsEveryWay(bytes: Buffer, maxPayload?: number): Event[] {
  const expected = feed(bytes, whole(bytes), maxPayload);
  assert.deepEqual(feed(bytes, byteByByte(bytes), maxPayload), expected, 'byte by byte');
  for (let seed = 1; seed <= 20; seed++) {
    assert.deepEqual(feed(bytes, randomCuts(bytes, seed), maxPayload), expected, `random cuts, seed ${seed}`);
  }
  return expected;
}

const message = (payload: Buffer | string, binary = false): Event => ({
  kind: 'message',
  binary,
  payload: (typeof payload === 'string' ? Buffer.from(payload) : payload).toString('hex'),
});

describe('frame parser', () => {
  it('reads pipelined text and binary frames in the 7-bit, 16-bit and 64-bit length forms', () => {
    const sizes = [0, 1, 125, 126, 127, 65535, 65536, 70_000];
    const frames: Buffer[] = [];
    const expected: Event[] = [];
    for (const size of sizes) {
      const text = 'x'.repeat(size);
      frames.push(frame({ opcode: TEXT, payload: text }), frame({ opcode: BINARY, payload: pattern(size) }));
      expected.push(message(text), message(pattern(size), true));
    }
    assert.deepEqual(eventsEveryWay(Buffer.concat(frames)), expected);
  });

  it('reassembles fragmented messages, with control frames between the fragments', () => {
    const big = pattern(70_000);
    const bytes = Buffer.concat([
      frame({ opcode: TEXT, payload: 'he', fin: false }),
      frame({ opcode: PING, payload: 'p1' }),
      frame({ opcode: CONTINUATION, payload: '', fin: false }),
      frame({ opcode: CONTINUATION, payload: 'llo' }),
      frame({ opcode: BINARY, payload: big.subarray(0, 100), fin: false }),
      frame({ opcode: PONG, payload: 'p2' }),
      frame({ opcode: CONTINUATION, payload: big.subarray(100, 66_000), fin: false }),
      frame({ opcode: CONTINUATION, payload: big.subarray(66_000) }),
      frame({ opcode: TEXT, payload: 'after' }),
    ]);
    assert.deepEqual(eventsEveryWay(bytes), [
      { kind: 'ping', payload: Buffer.from('p1').toString('hex') },
      message('hello'),
      { kind: 'pong', payload: Buffer.from('p2').toString('hex') },
      message(big, true),
      message('after'),
    ]);
  });

  it('reads close frames: code and reason, code alone, and no payload (1005)', () => {
    for (const [payload, code, reason] of [
      [closePayload(4001, 'token expired'), 4001, 'token expired'],
      [closePayload(1000), 1000, ''],
      [closePayload(1001, 'héllo ✓'), 1001, 'héllo ✓'],
      [Buffer.alloc(0), 1005, ''],
    ] as const) {
      const bytes = Buffer.concat([frame({ opcode: TEXT, payload: 'last' }), frame({ opcode: CLOSE, payload })]);
      assert.deepEqual(eventsEveryWay(bytes), [message('last'), { kind: 'close', code, reason }]);
    }
  });

  it('hands out whole frames as views and copies only what a read boundary cuts', () => {
    const owned: boolean[] = [];
    const sink: FrameSink = {
      onMessage: (_payload, _binary, isOwned) => void owned.push(isOwned),
      onPing: () => {},
      onPong: () => {},
      onClose: () => {},
      onProtocolError: () => assert.fail('no error expected'),
    };
    const parser = new FrameParser(sink, 1 << 20);
    const bytes = Buffer.concat([frame({ opcode: TEXT, payload: 'whole' }), frame({ opcode: TEXT, payload: 'cut in two' })]);
    parser.push(bytes, 0, bytes.length - 3);
    parser.push(bytes, bytes.length - 3, bytes.length);
    assert.deepEqual(owned, [false, true]);
  });

  describe('refuses what a server must not send, and parses nothing after it', () => {
    const cases: Array<[name: string, bad: Buffer, code: number, problem: RegExp]> = [
      ['a masked frame', frame({ opcode: TEXT, payload: 'ab', mask: Buffer.from([1, 2, 3, 4]) }), 1002, /must not be masked/],
      ['reserved bits', frame({ opcode: TEXT, payload: 'a', rsv: 0x40 }), 1002, /reserved bits/],
      ['an unknown data opcode', frame({ opcode: 0x3, payload: 'a' }), 1002, /unknown data opcode 3/],
      ['an unknown control opcode', frame({ opcode: 0xb }), 1002, /unknown control opcode 11/],
      ['a fragmented control frame', frame({ opcode: PING, payload: 'a', fin: false }), 1002, /fragmented control frame/],
      ['a control frame over 125 bytes', frame({ opcode: PING, payload: 'x'.repeat(126) }), 1002, /longer than 125/],
      ['a continuation without a message', frame({ opcode: CONTINUATION, payload: 'a' }), 1002, /continuation without a message/],
      [
        'a new message inside a fragmented one',
        Buffer.concat([frame({ opcode: TEXT, payload: 'a', fin: false }), frame({ opcode: TEXT, payload: 'b' })]),
        1002,
        /new message inside a fragmented one/,
      ],
      ['a close frame with a 1-byte payload', frame({ opcode: CLOSE, payload: Buffer.from([3]) }), 1002, /1-byte payload/],
      ['a message over maxPayload', frame({ opcode: BINARY, payload: pattern(1025) }), 1009, /larger than maxPayload/],
      [
        'fragments that add up to more than maxPayload',
        Buffer.concat([frame({ opcode: TEXT, payload: 'x'.repeat(600), fin: false }), frame({ opcode: CONTINUATION, payload: 'x'.repeat(600) })]),
        1009,
        /larger than maxPayload/,
      ],
      ['a 64-bit length beyond 2^53', frame({ opcode: BINARY, claimLength: 2 ** 60 }), 1009, /larger than maxPayload/],
    ];
    for (const [name, bad, code, problem] of cases) {
      it(name, () => {
        // A good frame before and after: the first is delivered, the second never is.
        const bytes = Buffer.concat([frame({ opcode: TEXT, payload: 'ok' }), bad, frame({ opcode: TEXT, payload: 'never' })]);
        const events = eventsEveryWay(bytes, 1024);
        assert.equal(events.length, 2, JSON.stringify(events));
        assert.deepEqual(events[0], message('ok'));
        const error = events[1]!;
        assert.equal(error.kind, 'error');
        assert.equal((error as { code: number }).code, code);
        assert.match((error as { problem: string }).problem, problem);
      });
    }
  });
});
