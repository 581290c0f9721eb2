/**
 * The ocs.v1.json decoder on its own, without sockets: what a client may send, and that
 * anything else is a coded E_BAD_FRAME value rather than a throw.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { decodeJson, MAX_DEPTH } from '../src/protocol/json-codec.js';
import { MAX_ID_LENGTH, MAX_REF_LENGTH, type ClientFrame, type FrameError } from '../src/protocol/frames.js';

const encoder = new TextEncoder();
/** A text frame as uWS hands it over: an ArrayBuffer of exactly the frame's bytes. */
const frameOf = (text: string): ArrayBuffer => {
  const bytes = encoder.encode(text);
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
};
const decode = (value: unknown): ClientFrame | FrameError => decodeJson(frameOf(JSON.stringify(value)), false);
const decodeText = (text: string): ClientFrame | FrameError => decodeJson(frameOf(text), false);

function assertBad(result: ClientFrame | FrameError, message: RegExp, ref?: string): void {
  assert.equal(result.op, 'err', `expected a refusal, got ${JSON.stringify(result)}`);
  const error = result as FrameError;
  assert.equal(error.code, 'E_BAD_FRAME');
  assert.match(error.message, message);
  assert.equal(error.ref, ref);
}

describe('decodeJson: valid frames', () => {
  const valid: Array<[string, unknown, ClientFrame]> = [
    ['auth', { op: 'auth', token: 'abc.def.ghi' }, { op: 'auth', token: 'abc.def.ghi', ref: undefined }],
    ['auth with a ref (a token refresh)', { op: 'auth', token: 'abc.def.ghi', ref: 'r' }, { op: 'auth', token: 'abc.def.ghi', ref: 'r' }],
    ['join', { op: 'join', group: 'team.red', ref: 'r1' }, { op: 'join', group: 'team.red', ref: 'r1' }],
    ['join without ref', { op: 'join', group: 'g' }, { op: 'join', group: 'g', ref: undefined }],
    ['leave', { op: 'leave', group: 'g', ref: 'r2' }, { op: 'leave', group: 'g', ref: 'r2' }],
    ['pub (pri defaults to NORMAL)', { op: 'pub', group: 'g', data: { text: 'hi' } }, { op: 'pub', group: 'g', data: { text: 'hi' }, pri: 1, ref: undefined }],
    ['pub with pri and ref', { op: 'pub', group: 'g', data: 1, pri: 3, ref: 'x' }, { op: 'pub', group: 'g', data: 1, pri: 3, ref: 'x' }],
    ['pub with null data', { op: 'pub', group: 'g', data: null }, { op: 'pub', group: 'g', data: null, pri: 1, ref: undefined }],
    ['ping', { op: 'ping', t: 12.5 }, { op: 'ping', t: 12.5 }],
    ['send', { op: 'send', to: 'bob', data: 'x', pri: 0, ref: 's', at: 1795720000000 }, { op: 'send', to: 'bob', data: 'x', pri: 0, ref: 's', at: 1795720000000 }],
    ['send without at', { op: 'send', to: 'bob', data: 'x' }, { op: 'send', to: 'bob', data: 'x', pri: 1, ref: undefined, at: undefined }],
    ['any', { op: 'any', group: 'workers', data: [1], strategy: 'weighted' }, { op: 'any', group: 'workers', data: [1], pri: 1, ref: undefined, strategy: 'weighted' }],
    ['ack', { op: 'ack', id: '4f1c2a9e.0.0' }, { op: 'ack', ids: ['4f1c2a9e.0.0'] }],
    ['ack of several', { op: 'ack', ids: ['a.m1', 'a.m2'] }, { op: 'ack', ids: ['a.m1', 'a.m2'] }],
  ];
  for (const [name, input, expected] of valid) {
    test(name, () => assert.deepEqual(decode(input), expected));
  }

  test('fields the op does not use are ignored', () => {
    assert.deepEqual(decode({ op: 'ping', t: 1, extra: { a: 1 } }), { op: 'ping', t: 1 });
  });

  test('non-ASCII text in data arrives intact', () => {
    const frame = decode({ op: 'pub', group: 'g', data: 'héllo ✓ 😀' });
    assert.equal(frame.op, 'pub');
    assert.equal((frame as Extract<ClientFrame, { op: 'pub' }>).data, 'héllo ✓ 😀');
  });
});

describe('decodeJson: refusals', () => {
  test('a binary frame is refused: this encoding is text only', () => {
    assertBad(decodeJson(frameOf('{"op":"ping","t":1}'), true), /binary frames/);
  });

  test('text that is not JSON', () => {
    assertBad(decodeText('{"op":"pub",'), /not valid JSON/);
    assertBad(decodeText(''), /not valid JSON/);
  });

  for (const [name, text] of [['an array', '[1,2]'], ['a string', '"ping"'], ['a number', '42'], ['null', 'null'], ['true', 'true']]) {
    test(`a frame that is ${name}, not an object`, () => assertBad(decodeText(text!), /must be a JSON object/));
  }

  test('no op, or an unknown one (its name cut short in the message)', () => {
    assertBad(decode({ group: 'g' }), /needs an op/);
    assertBad(decode({ op: 'explode' }), /unknown op "explode"/);
    assertBad(decode({ op: 42 }), /unknown op 42/);
    // Names of Object.prototype members are ops like any other: unknown.
    assertBad(decode({ op: 'toString' }), /unknown op/);
    const long = decode({ op: 'x'.repeat(10_000) }) as FrameError;
    assertBad(long, /unknown op/);
    assert.ok(long.message.length < 60, 'an op name is echoed at most 40 characters long');
  });

  const wrongTypes: Array<[string, unknown, RegExp]> = [
    ['a group that is a number', { op: 'join', group: 42 }, /group must match/],
    ['a group with a space', { op: 'join', group: 'a b' }, /group must match/],
    ['a group with a quote (names travel unescaped)', { op: 'pub', group: 'a"b', data: 1 }, /group must match/],
    ['an empty group', { op: 'leave', group: '' }, /group must match/],
    ['a group of 129 characters', { op: 'join', group: 'g'.repeat(129) }, /group must match/],
    ['a pub without data', { op: 'pub', group: 'g' }, /pub needs data/],
    ['a priority out of range', { op: 'pub', group: 'g', data: 1, pri: 4 }, /pri must be/],
    ['a priority as a string', { op: 'pub', group: 'g', data: 1, pri: '1' }, /pri must be/],
    ['a fractional priority', { op: 'send', to: 'bob', data: 1, pri: 1.5 }, /pri must be/],
    ['a ping whose t is a string', { op: 'ping', t: '1' }, /ping needs a number/],
    ['a send to an invalid user id', { op: 'send', to: 'bob smith', data: 1 }, /to must be a user id/],
    ['a send without to', { op: 'send', data: 1 }, /to must be a user id/],
    ['a send without data', { op: 'send', to: 'bob' }, /send needs data/],
    ['a send at a negative time', { op: 'send', to: 'bob', data: 1, at: -1 }, /at must be a time/],
    ['a send at a string time', { op: 'send', to: 'bob', data: 1, at: '2026-01-01' }, /at must be a time/],
    ['an any with an unknown strategy', { op: 'any', group: 'g', data: 1, strategy: 'random' }, /strategy must be one of/],
    ['an any without data', { op: 'any', group: 'g' }, /any needs data/],
    ['an ack without an id', { op: 'ack' }, /ack needs an id/],
    ['an ack with an empty id', { op: 'ack', id: '' }, /ack needs an id/],
    ['an ack with a numeric id', { op: 'ack', id: 7 }, /ack needs an id/],
    ['an ack with an id over the limit', { op: 'ack', id: 'i'.repeat(MAX_ID_LENGTH + 1) }, /ack needs an id/],
    ['an auth without a token', { op: 'auth' }, /auth needs a token/],
    ['an auth with an empty token', { op: 'auth', token: '' }, /auth needs a token/],
    ['an auth with a token object', { op: 'auth', token: { sub: 'alice' } }, /auth needs a token/],
  ];
  for (const [name, input, message] of wrongTypes) {
    test(name, () => assertBad(decode(input), message));
  }

  test('a ping whose t overflows to Infinity', () => {
    assertBad(decodeText('{"op":"ping","t":1e400}'), /number out of range/);
  });

  test('a number that overflows to Infinity anywhere in data (a msgpack member would get Infinity, a JSON one null)', () => {
    assertBad(decodeText('{"op":"pub","group":"g","data":{"x":[1,-1e400]},"ref":"r"}'), /number out of range/, 'r');
    assert.equal(decodeText('{"op":"pub","group":"g","data":{"x":1e308}}').op, 'pub');
  });

  test('a bad ref is refused before the op is looked at', () => {
    assertBad(decode({ op: 'ping', t: 1, ref: 5 }), /ref must be a well-formed string/);
    assertBad(decode({ op: 'ping', t: 1, ref: 'r'.repeat(MAX_REF_LENGTH + 1) }), /ref must be a well-formed string/);
    assert.equal(decode({ op: 'join', group: 'g', ref: 'r'.repeat(MAX_REF_LENGTH) }).op, 'join');
  });

  test('a ref or an ack id holding half a surrogate pair is refused (UTF-8 cannot carry it back); a whole pair is fine', () => {
    assertBad(decodeText('{"op":"ping","t":1,"ref":"x\\ud800"}'), /ref must be a well-formed string/);
    assertBad(decodeText('{"op":"ping","t":1,"ref":"\\udc00x"}'), /ref must be a well-formed string/);
    assertBad(decodeText('{"op":"ack","id":"m\\ud800","ref":"r"}'), /ack needs an id, or ids/, 'r');
    assert.equal(decodeText('{"op":"ping","t":1,"ref":"\\ud83d\\ude00"}').op, 'ping');
  });

  test('a refusal echoes the frame\'s ref, so the client knows which request failed', () => {
    assertBad(decode({ op: 'pub', group: 'g', data: 1, pri: 9, ref: 'mine' }), /pri must be/, 'mine');
    assertBad(decode({ op: 'explode', ref: 'mine' }), /unknown op/, 'mine');
  });
});

describe('decodeJson: hostile values', () => {
  test('a large data value decodes whole (the size limit is the transport\'s job)', () => {
    const text = 'x'.repeat(1 << 20);
    const frame = decode({ op: 'pub', group: 'g', data: { text } }) as Extract<ClientFrame, { op: 'pub' }>;
    assert.equal(frame.op, 'pub');
    assert.equal((frame.data as { text: string }).text.length, 1 << 20);
  });

  test(`data nested deeper than ${MAX_DEPTH} levels is a bad frame (encoding it again would overflow the stack), with its ref`, () => {
    const nested = (depth: number, inner = '1'): string => '['.repeat(depth) + inner + ']'.repeat(depth);
    assertBad(decodeText(`{"op":"pub","group":"g","data":${nested(100_000)},"ref":"r"}`), /nested deeper than 64 levels/, 'r');
    // The frame object is level 1: data may nest 63 levels, arrays or objects alike.
    assert.equal(decodeText(`{"op":"pub","group":"g","data":${nested(MAX_DEPTH - 1)}}`).op, 'pub');
    assertBad(decodeText(`{"op":"pub","group":"g","data":${nested(MAX_DEPTH)}}`), /nested deeper/);
    const objects = (depth: number): string => '{"a":'.repeat(depth) + '1' + '}'.repeat(depth);
    assert.equal(decodeText(`{"op":"pub","group":"g","data":${objects(MAX_DEPTH - 1)}}`).op, 'pub');
    assertBad(decodeText(`{"op":"pub","group":"g","data":${objects(MAX_DEPTH)}}`), /nested deeper/);
    // Deep in a later element of a wide array counts too.
    assertBad(decodeText(`{"op":"pub","group":"g","data":[1,{"x":2},${nested(MAX_DEPTH)}]}`), /nested deeper/);
  });

  test('deeply nested JSON that is cut short is a bad frame, not a throw', () => {
    assertBad(decodeText(`{"op":"pub","group":"g","data":${'['.repeat(100_000)}`), /not valid JSON/);
  });

  test('a __proto__ key is an own property: it neither sets the prototype nor supplies the op', () => {
    assertBad(decodeText('{"__proto__":{"op":"ping","t":1}}'), /needs an op/);
    assert.equal(({} as Record<string, unknown>).op, undefined, 'Object.prototype is untouched');
  });

  test('a __proto__ key inside data is kept as data and pollutes nothing', () => {
    const frame = decodeText('{"op":"pub","group":"g","data":{"__proto__":{"admin":true},"a":1}}') as Extract<ClientFrame, { op: 'pub' }>;
    assert.equal(frame.op, 'pub');
    const data = frame.data as Record<string, unknown>;
    assert.ok(Object.prototype.hasOwnProperty.call(data, '__proto__'));
    assert.equal(Object.getPrototypeOf(data), Object.prototype);
    assert.equal(({} as Record<string, unknown>).admin, undefined);
    // Re-encoding (as the shard does once per pub) keeps the key.
    assert.equal(JSON.stringify(data), '{"__proto__":{"admin":true},"a":1}');
  });

  test('invalid UTF-8 becomes U+FFFD rather than an error', () => {
    const bytes = Uint8Array.from([...encoder.encode('{"op":"pub","group":"g","data":"'), 0xff, 0xfe, ...encoder.encode('"}')]);
    const frame = decodeJson(bytes.buffer, false) as Extract<ClientFrame, { op: 'pub' }>;
    assert.equal(frame.op, 'pub');
    assert.equal(frame.data, '\ufffd\ufffd');
  });

  test('a frame that starts with a byte-order mark is not JSON, and is refused', () => {
    const bytes = Uint8Array.from([0xef, 0xbb, 0xbf, ...encoder.encode('{"op":"ping","t":1}')]);
    assertBad(decodeJson(bytes.buffer, false), /not valid JSON/);
  });

  test('a frame given as a view decodes its own bytes, not the rest of the buffer around it', () => {
    const around = encoder.encode('xx{"op":"ping","t":7}yy');
    assert.deepEqual(decodeJson(around.subarray(2, around.length - 2), false), { op: 'ping', t: 7 });
  });
});
