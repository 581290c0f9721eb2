import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { Packr } from 'msgpackr';
import { deflateLz4, inflateLz4 } from '../src/codec/lz4.js';
import { isErrorCode } from '../src/protocol/errors.js';
import { ANY_STRATEGIES, MAX_ACK_IDS, MAX_ID_LENGTH, MAX_REF_LENGTH, NAME_PATTERN, type ClientFrame, type FrameError } from '../src/protocol/frames.js';
import { decodeJson, encodeFrameError } from '../src/protocol/json-codec.js';
import { decodeMsgpack, packValue, writeFrame } from '../src/protocol/msgpack-codec.js';
import { plainFrame, wrapFrame } from '../src/protocol/wire.js';
import { frameSpec, PROTO_NAMES } from './fuzzing/arbitraries.js';
import { fuzzSeed } from './fuzzing/properties.js';
import { renderBinaryFrame, renderFrame, type RenderEnv } from './fuzzing/render.js';

const seed = fuzzSeed();
const numRuns = Number(process.env.FUZZ_RUNS ?? 1000);
const env: RenderEnv = { now: 1_800_000_000_000, lastId: 'some-id', tokens: new Map() };

function decode(bytes: Uint8Array, isBinary = false): ClientFrame | FrameError {
  const copy = new Uint8Array(bytes.length);
  copy.set(bytes);
  return decodeJson(copy.buffer, isBinary);
}

const OWN_KEYS: Record<ClientFrame['op'], string[]> = {
  auth: ['op', 'token', 'ref'],
  join: ['op', 'group', 'ref', 'since', 'presence'],
  leave: ['op', 'group', 'ref'],
  presence: ['op', 'group', 'ref', 'counts'],
  history: ['op', 'group', 'ref', 'since', 'limit'],
  pub: ['op', 'group', 'data', 'pri', 'ref'],
  send: ['op', 'to', 'data', 'pri', 'ref', 'at'],
  any: ['op', 'group', 'data', 'pri', 'ref', 'strategy'],
  ack: ['op', 'ids'],
  ping: ['op', 't'],
};

const isRef = (ref: unknown): boolean => ref === undefined || (typeof ref === 'string' && ref.length <= MAX_REF_LENGTH);
const isName = (name: unknown): boolean => typeof name === 'string' && NAME_PATTERN.test(name);
const isOffset = (n: unknown): boolean => typeof n === 'number' && Number.isSafeInteger(n) && n >= 0;
const isPri = (pri: unknown): boolean => pri === 0 || pri === 1 || pri === 2 || pri === 3;

/** What every decode result must be: a refusal with a code from the table, or a frame whose every field the server can trust. */
function assertWellFormed(result: ClientFrame | FrameError): void {
  if (result.op === 'err') {
    assert.ok(isErrorCode(result.code), `code ${String(result.code)} is in the table`);
    assert.equal(result.code, 'E_BAD_FRAME');
    assert.equal(typeof result.message, 'string');
    assert.ok(isRef(result.ref), 'an echoed ref is a short string');
    // The refusal as it goes on the wire is one JSON object with that code.
    const wire = JSON.parse(encodeFrameError(result)) as Record<string, unknown>;
    assert.equal(wire.code, result.code);
    return;
  }
  assert.ok(result.op in OWN_KEYS, `op ${String(result.op)}`);
  assert.equal(Object.getPrototypeOf(result), Object.prototype);
  for (const key of Object.keys(result)) assert.ok(OWN_KEYS[result.op].includes(key), `no field ${key} on ${result.op}`);
  switch (result.op) {
    case 'auth':
      assert.ok(typeof result.token === 'string' && result.token.length > 0);
      break;
    case 'join':
      assert.ok(isName(result.group) && isRef(result.ref));
      assert.ok(result.presence === undefined || typeof result.presence === 'boolean');
      if (result.since !== undefined) {
        assert.ok(isOffset(result.since.offset) && typeof result.since.epoch === 'string' && result.since.epoch.length > 0);
        assert.deepEqual(Object.keys(result.since).sort(), ['epoch', 'offset']);
      }
      break;
    case 'leave':
      assert.ok(isName(result.group) && isRef(result.ref));
      break;
    case 'presence':
      assert.ok(isName(result.group) && isRef(result.ref) && typeof result.counts === 'boolean');
      break;
    case 'history':
      assert.ok(isName(result.group) && isRef(result.ref) && isOffset(result.since));
      assert.ok(result.limit === undefined || (isOffset(result.limit) && result.limit > 0));
      break;
    case 'pub':
    case 'any':
      assert.ok(isName(result.group) && isRef(result.ref) && isPri(result.pri));
      if (result.op === 'any') assert.ok(result.strategy === undefined || ANY_STRATEGIES.includes(result.strategy));
      break;
    case 'send':
      assert.ok(isName(result.to) && isRef(result.ref) && isPri(result.pri));
      assert.ok(result.at === undefined || (Number.isFinite(result.at) && result.at >= 0));
      break;
    case 'ack':
      assert.ok(result.ids.length > 0 && result.ids.length <= MAX_ACK_IDS && result.ids.every((id) => typeof id === 'string' && id.length > 0 && id.length <= MAX_ID_LENGTH));
      break;
    case 'ping':
      assert.ok(Number.isFinite(result.t));
      break;
  }
}

function decodesWellFormed(bytes: Uint8Array, isBinary = false): void {
  assertWellFormed(decode(bytes, isBinary));
}

describe(`fuzz: the ocs.v1 JSON decoder never throws and answers a frame or a coded refusal (FUZZ_SEED=${seed})`, () => {
  const options = { seed, numRuns };

  test('random bytes, as text and as binary frames', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), fc.boolean(), (bytes, isBinary) => decodesWellFormed(bytes, isBinary)), options);
  });

  test('random JSON values and random JavaScript values serialised', () => {
    fc.assert(fc.property(fc.jsonValue(), (value) => decodesWellFormed(Buffer.from(JSON.stringify(value) ?? 'null'))), options);
    fc.assert(fc.property(fc.anything({ withBigInt: false }), (value) => decodesWellFormed(Buffer.from(String(JSON.stringify(value))))), options);
  });

  test('valid ops with wrong types, hostile names, extreme numbers, __proto__ and constructor keys, and byte mutations', () => {
    const frames = frameSpec({ withProto: true });
    fc.assert(fc.property(frames, (spec) => decodesWellFormed(renderFrame(spec, env))), options);
  });

  test('deep nesting of arrays and objects, alone and as the data of a pub', () => {
    const depth = fc.integer({ min: 1, max: 200_000 });
    fc.assert(
      fc.property(depth, fc.boolean(), fc.boolean(), (n, arrays, asData) => {
        const nested = arrays ? '['.repeat(n) + ']'.repeat(n) : '{"a":'.repeat(n) + '1' + '}'.repeat(n);
        decodesWellFormed(Buffer.from(asData ? `{"op":"pub","group":"g","data":${nested}}` : nested));
      }),
      { seed, numRuns: Math.min(numRuns, 40) },
    );
  });

  test('data the decoder accepts can be encoded again, as the server does for every pub and send (defect 7 of issue 8)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 30_000 }), fc.boolean(), (n, arrays) => {
        const nested = arrays ? '['.repeat(n) + ']'.repeat(n) : '{"a":'.repeat(n) + '1' + '}'.repeat(n);
        const result = decode(Buffer.from(`{"op":"pub","group":"g","data":${nested}}`));
        if (result.op === 'pub') JSON.stringify(result.data);
      }),
      { seed, numRuns: Math.min(numRuns, 40) },
    );
  });

  test('huge, tiny, negative and non-finite numbers in every numeric field', () => {
    const number = fc.oneof(
      fc.constantFrom('1e999', '-1e999', '1e-400', '-0', '123456789012345678901234567890', '9007199254740993', '8.64e15', '1e300', '3.0', '2.5', '-1'),
      fc.double().map((d) => (Number.isFinite(d) ? String(d) : '0')),
    );
    const op = fc.constantFrom('{"op":"pub","group":"g","data":1,"pri":%}', '{"op":"send","to":"u","data":1,"at":%}', '{"op":"send","to":"u","data":1,"pri":%}', '{"op":"ping","t":%}', '{"op":"any","group":"g","data":1,"pri":%}');
    fc.assert(fc.property(op, number, (template, n) => decodesWellFormed(Buffer.from(template.replace('%', n)))), options);
  });

  test('keys named after Object.prototype members pollute nothing and smuggle no field in', () => {
    const before = Object.getOwnPropertyNames(Object.prototype).sort();
    const key = fc.constantFrom(...PROTO_NAMES, 'op', 'data', 'group');
    const member = fc.tuple(key, fc.jsonValue({ maxDepth: 2 })).map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`);
    const op = fc.constantFrom('"pub"', '"send"', '"any"', '"join"', '"ack"', '"__proto__"', '"constructor"', '"toString"');
    fc.assert(
      fc.property(op, fc.array(member, { maxLength: 5 }), (opText, members) => {
        const result = decode(Buffer.from(`{"op":${opText},${[...members, '"group":"g"', '"to":"u"'].join(',')}}`));
        assertWellFormed(result);
        // `data` counts only when the frame itself has it, not through a `__proto__` member.
        if (result.op === 'pub' && !members.some((m) => m.startsWith('"data":'))) assert.fail('a pub without its own data was accepted');
      }),
      options,
    );
    assert.deepEqual(Object.getOwnPropertyNames(Object.prototype).sort(), before);
  });
});

describe(`fuzz: the ocs.v1.msgpack decoder never throws, allocates no more than max_payload, and answers a frame or a coded refusal (FUZZ_SEED=${seed})`, () => {
  const options = { seed, numRuns };
  const maxPayload = 64 * 1024;
  /** A packer that writes whatever msgpackr can: records, dates, bins, maps with odd keys, BigInts. */
  const wild = new Packr({ useRecords: true, moreTypes: true, structuredClone: true });
  const inflates: number[] = [];
  /** lz4-napi, recording each size it is asked to allocate. */
  const watchedInflate: typeof inflateLz4 = (prefixed, size) => {
    inflates.push(size);
    return inflateLz4(prefixed, size);
  };
  function decodeBinary(frame: Uint8Array, isBinary = true): ClientFrame | FrameError {
    inflates.length = 0;
    const result = decodeMsgpack(frame, isBinary, maxPayload, watchedInflate);
    for (const size of inflates) assert.ok(size <= maxPayload, `inflate asked for ${size} bytes`);
    if (result.op !== 'err' && 'data' in result) {
      // What the server accepted it must be able to send on, in both encodings.
      JSON.stringify(result.data);
      writeFrame(result.data);
    }
    return result;
  }
  const wellFormedBinary = (frame: Uint8Array, isBinary = true): void => assertWellFormed(decodeBinary(frame, isBinary));
  const asFrames = (body: Uint8Array): Uint8Array[] => [plainFrame(body), wrapFrame(body, deflateLz4, 0)];

  test('random bytes, as binary and as text frames', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), fc.boolean(), (bytes, isBinary) => wellFormedBinary(bytes, isBinary)), options);
  });

  test('every flags byte in front of random and of valid bodies', () => {
    const body = fc.oneof(fc.uint8Array({ maxLength: 200 }), fc.jsonValue().map((v) => packValue({ op: 'pub', group: 'g', data: v })));
    fc.assert(fc.property(fc.integer({ min: 0, max: 255 }), body, (flags, bytes) => wellFormedBinary(Uint8Array.of(flags, ...bytes))), options);
  });

  test('any value msgpackr can write (records, dates, bins, BigInts, Maps, Sets), plain and compressed', () => {
    const value = fc.anything({ withBigInt: true, withDate: true, withMap: true, withSet: true, withTypedArray: true, withNullPrototype: true });
    const frame = fc.oneof(value, value.map((data) => ({ op: 'pub', group: 'g', data })));
    fc.assert(
      fc.property(frame, (v) => {
        let body: Uint8Array;
        try {
          body = wild.pack(v);
        } catch {
          return; // not even msgpackr can write it
        }
        for (const f of asFrames(body)) wellFormedBinary(f);
      }),
      options,
    );
  });

  test('the JSON fuzzer’s frames (wrong types, hostile names, extreme numbers, __proto__ keys) packed, then mutated byte by byte', () => {
    fc.assert(fc.property(frameSpec({ withProto: true }), (spec) => wellFormedBinary(renderBinaryFrame(spec, env))), options);
  });

  test('compressed frames whose declared length lies, up to 4 GiB: refused before allocating over max_payload', () => {
    const good = fc.jsonValue().map((v) => wrapFrame(packValue({ op: 'pub', group: 'g', data: v, pad: 'x'.repeat(40) }), deflateLz4, 0));
    fc.assert(
      fc.property(good, fc.oneof(fc.integer({ min: 0, max: 2 * maxPayload }), fc.integer({ min: 0, max: 0xffffffff })), (frame, declared) => {
        const lying = Uint8Array.from(frame);
        new DataView(lying.buffer).setUint32(1, declared, true);
        wellFormedBinary(lying);
      }),
      options,
    );
  });

  test('deep nesting of MessagePack arrays and maps, alone and as the data of a pub', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 200_000 }), fc.boolean(), fc.boolean(), (n, arrays, asData) => {
        const head = asData ? Buffer.from(packValue({ op: 'pub', group: 'g', data: null })).subarray(0, -1) : Buffer.alloc(0);
        const nested = Buffer.alloc(n * (arrays ? 1 : 3) + 1);
        for (let i = 0; i < n; i++) nested.set(arrays ? [0x91] : [0x81, 0xa1, 0x61], i * (arrays ? 1 : 3));
        nested[nested.length - 1] = 0x01;
        for (const f of asFrames(Buffer.concat([head, nested]))) wellFormedBinary(f);
      }),
      { seed, numRuns: Math.min(numRuns, 40) },
    );
  });
});
