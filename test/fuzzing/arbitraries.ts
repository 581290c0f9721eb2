/**
 * What the fuzzer throws at the server, as fast-check arbitraries: ocs.v1 frames (valid ops
 * with wrong types, hostile names, extreme numbers, text-level mutations), sessions of them
 * (some pipelined in one TCP write), WebSocket-level frames, and raw HTTP requests.
 *
 * Frames are kept as lists of [key, JSON text] so that what JSON.stringify cannot write
 * survives to the wire: 1e999, -0, duplicate keys, a `__proto__` key.
 */
import fc from 'fast-check';
import { Opcode, type RawFrame } from '../helpers/raw-ws.js';

/** Names that are properties of Object.prototype: a plain object keyed by them answers without being asked. */
export const PROTO_NAMES = ['__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', 'valueOf', 'isPrototypeOf', '__defineGetter__'];
export const WITNESS_GROUP = 'witnesses';
export const witnessUser = (shard: number): string => `witness-${shard}`;
/** The witnesses of a two-shard server, and of its peer node in a cluster (witness-2, witness-3): recipients of fuzzed sends. */
export const WITNESS_USERS = [0, 1, 2, 3].map(witnessUser);

/** A field value: JSON text, or something only known when the frame is sent. */
export type Value =
  | { text: string }
  /** JSON.stringify(s.repeat(n)): long strings stay short in a printed counterexample. */
  | { repeat: [s: string, n: number] }
  /** `depth` nested arrays (or objects) around nothing (or 1). */
  | { nest: [depth: number, arrays: boolean] }
  | { nowPlus: number }
  | { token: TokenSpec }
  /** The id of the last message this connection received, if any. */
  | { lastId: true };
export type Field = [key: string, value: Value];

export interface Mutation {
  kind: 'truncate' | 'flip' | 'insert' | 'delete' | 'wrap';
  /** Position as a fraction of the frame's length. */
  at: number;
  bytes: number[];
}

export interface FrameSpec {
  fields: Field[];
  mutation: Mutation | null;
}

export interface TokenSpec {
  sub: string | null;
  /** Seconds from now; negative: expired. */
  expiresIn: number;
  groups: unknown;
  weight: unknown;
  /** Signed with another secret than the server's. */
  wrongSecret: boolean;
}

export type Identity = { kind: 'anonymous'; user: string } | { kind: 'token'; token: TokenSpec } | { kind: 'first-frame' };

export type Step = { kind: 'frames'; frames: FrameSpec[] } | { kind: 'raw'; frames: RawFrame[] } | { kind: 'pause'; ms: number };

export interface SessionSpec {
  identity: Identity;
  path: string;
  protocols: string[];
  steps: Step[];
}

export interface HttpRequestSpec {
  method: string;
  target: string;
  /** Characters appended to the target: very long paths, kept short in a printed counterexample. */
  longPath: number;
  version: string;
  /** name, value, and how many times the value is repeated. */
  headers: Array<[string, string, number]>;
  body: string;
}

const text = (value: unknown): Value => ({ text: JSON.stringify(value) });
const raw = (...tokens: string[]): fc.Arbitrary<Value> => fc.constantFrom(...tokens.map((t) => ({ text: t })));

// --- names ------------------------------------------------------------------------------

const validName = fc.stringMatching(/^[A-Za-z0-9_.:@/#+-]{1,24}$/);
const badName = fc.oneof(
  fc.constantFrom('', ' ', 'a b', 'a*', '*', 'g"', 'g\\', 'ü', '😀', '\u0000', 'x'.repeat(129), 'x'.repeat(300)),
  fc.string({ maxLength: 40, unit: 'binary' }),
);

/**
 * User ids. The witnesses' ids are recipients only: a fuzz connection logged in as a witness
 * would take (and acknowledge) the witness's own messages.
 */
export function userName(withProto: boolean, asRecipient = false): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom('fuzz-a', 'fuzz-b', 'fuzz-c') },
    { weight: asRecipient ? 2 : 0, arbitrary: fc.constantFrom(...WITNESS_USERS) },
    { weight: withProto ? 3 : 0, arbitrary: fc.constantFrom(...PROTO_NAMES) },
    { weight: 2, arbitrary: validName },
  );
}

/** Groups: a few shared ones (so sessions meet), the witnesses' group, hostile names. */
function groupName(): fc.Arbitrary<string> {
  return fc.oneof(
    { weight: 6, arbitrary: fc.constantFrom('g0', 'g1', 'g2', WITNESS_GROUP) },
    { weight: 2, arbitrary: fc.constantFrom(...PROTO_NAMES) },
    { weight: 2, arbitrary: validName },
    { weight: 1, arbitrary: badName },
  );
}

// --- values -----------------------------------------------------------------------------

const anyJson = fc.oneof(
  raw('null', 'true', 'false', '0', '-0', '-1', '1e999', '-1e999', '1e-400', '123456789012345678901234567890', '""', '"x"', '[]', '{}'),
  fc.jsonValue({ maxDepth: 3 }).map(text),
);

/** Nesting deep enough to trouble a recursive encoder, small enough to stay under max_payload. */
const deepNesting = fc.tuple(fc.oneof(fc.integer({ min: 1, max: 30_000 }), fc.constantFrom(5_000, 10_000, 12_000, 30_000)), fc.boolean()).map(([depth, arrays]): Value => ({ nest: [depth, arrays] }));

const protoKeyed = fc
  .dictionary(fc.constantFrom(...PROTO_NAMES, 'type', 'a'), fc.jsonValue({ maxDepth: 2 }), { maxKeys: 4 })
  .map((o): Value => ({ text: '{' + Object.keys(o).map((k) => `${JSON.stringify(k)}:${JSON.stringify(o[k])}`).join(',') + '}' }));

/** Around max_payload (64 KiB by default) and twice that, where the refusal changes. */
const longString = fc.constantFrom(1000, 65_000, 65_600, 131_000, 140_000).map((n): Value => ({ repeat: ['x', n] }));

const data = fc.oneof(
  { weight: 6, arbitrary: anyJson },
  { weight: 1, arbitrary: deepNesting },
  { weight: 2, arbitrary: protoKeyed },
  { weight: 1, arbitrary: longString },
  { weight: 1, arbitrary: fc.constantFrom('mark', 'x', '__proto__').map((t): Value => ({ text: `{"type":${JSON.stringify(t)}}` })) },
);

const pri = fc.oneof({ weight: 4, arbitrary: raw('0', '1', '2', '3') }, { weight: 2, arbitrary: raw('-1', '4', '1.5', '1e999', '-0', '"1"', 'null', 'true', '3.0', '1e-400', '[]', '{}') });
const ref = fc.oneof(
  { weight: 4, arbitrary: fc.string({ maxLength: 12 }).map(text) },
  { weight: 1, arbitrary: fc.oneof(fc.constantFrom<Value>({ repeat: ['r', 128] }, { repeat: ['r', 129] }), raw('5', 'null', '""', '"__proto__"', '{}')) },
);

/** Epoch ms for `send.at`: past, near future, and past the 32-bit timer range (2^31-1 ms, some 25 days). */
const at = fc.oneof(
  { weight: 3, arbitrary: fc.integer({ min: -1e9, max: 3000 }).map((ms): Value => ({ nowPlus: ms })) },
  { weight: 1, arbitrary: fc.constantFrom(30, 400, 100_000).map((days): Value => ({ nowPlus: days * 86_400_000 })) },
  { weight: 1, arbitrary: raw('0', '-1', '1e999', '-1e999', 'null', '"soon"', '1e300', '8.64e15', '1.5') },
);
const strategy = raw('"round_robin"', '"least_connections"', '"weighted"', '"WEIGHTED"', '""', '"__proto__"', '"constructor"', '1', 'null');
const id = fc.oneof(
  { weight: 3, arbitrary: fc.constant<Value>({ lastId: true }) },
  { weight: 2, arbitrary: fc.string({ maxLength: 20 }).map(text) },
  { weight: 1, arbitrary: fc.oneof(fc.constantFrom<Value>({ repeat: ['i', 128] }, { repeat: ['i', 129] }), raw('""', '"__proto__"', '"constructor"', '7', 'null')) },
);
const t = fc.oneof({ weight: 3, arbitrary: fc.double({ noNaN: true, noDefaultInfinity: true }).map(text) }, { weight: 1, arbitrary: raw('1e999', '"1"', 'null', '-0', '[]') });

export const tokenSpec = (withProto: boolean): fc.Arbitrary<TokenSpec> =>
  fc.record({
    sub: fc.oneof({ weight: 5, arbitrary: userName(withProto) }, { weight: 1, arbitrary: badName }, { weight: 1, arbitrary: fc.constant(null) }),
    expiresIn: fc.oneof({ weight: 5, arbitrary: fc.constant(3600) }, { weight: 1, arbitrary: fc.constantFrom(-3600, -1, 1, 1e10) }),
    groups: fc.oneof(
      { weight: 4, arbitrary: fc.constant(undefined) },
      { weight: 2, arbitrary: fc.array(fc.constantFrom('g0', 'g1', 'g*', '*', WITNESS_GROUP, 'w*', '__proto__'), { maxLength: 3 }) },
      { weight: 1, arbitrary: fc.constantFrom<unknown>('everything', [1], [''], ['a b'], null, {}) },
    ),
    weight: fc.oneof({ weight: 4, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: fc.constantFrom<unknown>(1, 3, 0.5, 1e308, 5e-324, 0, -1, '2', null) }),
    wrongSecret: fc.oneof({ weight: 6, arbitrary: fc.constant(false) }, { weight: 1, arbitrary: fc.constant(true) }),
  });

// --- frames -----------------------------------------------------------------------------

const OPS = ['auth', 'join', 'leave', 'pub', 'send', 'any', 'ack', 'ping'] as const;
type Op = (typeof OPS)[number];

export interface FrameContext {
  /** Names (users, groups, keys) may be Object.prototype members. */
  withProto: boolean;
}

function fieldsOf(op: Op, ctx: FrameContext): fc.Arbitrary<Field[]> {
  const group = groupName().map(text);
  const to = userName(true, true).map(text);
  const auth = fc.oneof({ weight: 3, arbitrary: tokenSpec(ctx.withProto).map((token): Value => ({ token })) }, { weight: 1, arbitrary: anyJson });
  const shape: Array<[string, fc.Arbitrary<Value>]> = {
    auth: [['token', auth]],
    join: [['group', group], ['ref', ref]],
    leave: [['group', group], ['ref', ref]],
    pub: [['group', group], ['data', data], ['pri', pri], ['ref', ref]],
    send: [['to', to], ['data', data], ['pri', pri], ['ref', ref], ['at', at]],
    any: [['group', group], ['data', data], ['pri', pri], ['ref', ref], ['strategy', strategy]],
    ack: [['id', id]],
    ping: [['t', t]],
  }[op] as Array<[string, fc.Arbitrary<Value>]>;
  // Each field: usually present with a value of its type, sometimes missing or of another type.
  const fields = shape.map(([key, good]) =>
    fc.oneof({ weight: 8, arbitrary: good.map((v): Field[] => [[key, v]]) }, { weight: 1, arbitrary: anyJson.map((v): Field[] => [[key, v]]) }, { weight: 1, arbitrary: fc.constant<Field[]>([]) }),
  );
  const extra = fc.array(fc.tuple(fc.constantFrom(...PROTO_NAMES, 'op', 'ref', 'extra', ''), anyJson), { maxLength: 2 });
  return fc.tuple(fc.tuple(...fields), extra).map(([present, more]): Field[] => [['op', text(op)], ...present.flat(), ...(more as Field[])]);
}

const oddOp = fc.oneof(raw('"PUB"', '"welcome"', '"msg"', '"err"', '"batch"', '""', '"__proto__"', '"constructor"', '"toString"', 'null', '1', '["pub"]'), fc.string({ maxLength: 8 }).map(text));

const mutation: fc.Arbitrary<Mutation | null> = fc.oneof(
  { weight: 8, arbitrary: fc.constant(null) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constantFrom('truncate', 'flip', 'insert', 'delete', 'wrap'),
      at: fc.double({ min: 0, max: 1, noNaN: true }),
      bytes: fc.array(fc.oneof(fc.integer({ min: 0, max: 255 }), fc.constantFrom(...Buffer.from('{}[]",:\\0e-.'))), { minLength: 1, maxLength: 4 }),
    }),
  },
);

export function frameSpec(ctx: FrameContext): fc.Arbitrary<FrameSpec> {
  const fields = fc.oneof(
    { weight: 12, arbitrary: fc.constantFrom(...OPS).chain((op) => fieldsOf(op, ctx)) },
    { weight: 1, arbitrary: fc.tuple(oddOp, fc.array(fc.tuple(fc.constantFrom('group', 'data', 'to', 'id', 't', '__proto__'), anyJson), { maxLength: 3 })).map(([op, rest]): Field[] => [['op', op], ...(rest as Field[])]) },
  );
  return fc.record({ fields, mutation });
}

// --- WebSocket-level frames -------------------------------------------------------------

const INVALID_UTF8 = [[0xff], [0xc0, 0x80], [0xed, 0xa0, 0x80], [0xf4, 0x90, 0x80, 0x80], [0xe2, 0x82], [0x80]];
const invalidUtf8 = fc.tuple(fc.constantFrom(...INVALID_UTF8), fc.boolean()).map(([bad, inJson]) =>
  inJson ? Buffer.concat([Buffer.from('{"op":"ping","t":1,"x":"'), Buffer.from(bad), Buffer.from('"}')]) : Buffer.from(bad),
);
const payload = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom('{"op":"ping","t":1}', '{"op":"join","group":"g0"}', '{"op":"pub","group":"g0","data":1}').map((s) => Buffer.from(s)) },
  { weight: 2, arbitrary: invalidUtf8 },
  { weight: 2, arbitrary: fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b)) },
  { weight: 1, arbitrary: fc.constantFrom(126, 65_536, 140_000).map((n) => filled(n, 0x61)) },
);

const oddFrame: fc.Arbitrary<RawFrame> = fc.record({
  fin: fc.oneof({ weight: 4, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
  rsv: fc.oneof({ weight: 4, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: 1, max: 7 }) }),
  opcode: fc.oneof({ weight: 4, arbitrary: fc.constantFrom(Opcode.TEXT, Opcode.BINARY) }, { weight: 2, arbitrary: fc.constantFrom(Opcode.CONTINUATION, Opcode.CLOSE, Opcode.PING, Opcode.PONG) }, { weight: 1, arbitrary: fc.integer({ min: 0, max: 15 }) }),
  masked: fc.oneof({ weight: 6, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
  payload,
  lengthForm: fc.oneof({ weight: 8, arbitrary: fc.constant<RawFrame['lengthForm']>('minimal') }, { weight: 1, arbitrary: fc.constantFrom<RawFrame['lengthForm']>('wide16', 'wide64', 'top-bit') }),
  lengthDelta: fc.oneof({ weight: 8, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.integer({ min: -5, max: 5 }) }),
});

/** `n` bytes of `byte`, printed as such in a counterexample rather than byte by byte. */
function filled(n: number, byte: number): Buffer {
  return Object.assign(Buffer.alloc(n, byte), { [fc.toStringMethod]: () => `Buffer.alloc(${n}, ${byte})` });
}

const plain = (opcode: number, bytes: Uint8Array, fin = true): RawFrame => ({ fin, rsv: 0, opcode, masked: true, payload: bytes, lengthForm: 'minimal', lengthDelta: 0 });

/** A text message split into fragments, maybe with a control frame between them or a fault in the sequence. */
const fragmented: fc.Arbitrary<RawFrame[]> = fc
  .tuple(fc.constantFrom('{"op":"ping","t":2}', '{"op":"join","group":"g1","ref":"f"}'), fc.integer({ min: 2, max: 5 }), fc.constantFrom('none', 'ping-between', 'pong-between', 'text-between', 'no-final', 'no-start', 'binary-start', 'close-between'))
  .map(([message, parts, fault]) => {
    const bytes = Buffer.from(message);
    const size = Math.ceil(bytes.length / parts);
    const frames: RawFrame[] = [];
    for (let i = 0; i * size < bytes.length; i++) {
      const last = (i + 1) * size >= bytes.length;
      frames.push(plain(i === 0 ? (fault === 'binary-start' ? Opcode.BINARY : Opcode.TEXT) : Opcode.CONTINUATION, bytes.subarray(i * size, (i + 1) * size), last && fault !== 'no-final'));
    }
    const between: Record<string, RawFrame> = {
      'ping-between': plain(Opcode.PING, Buffer.from('p')),
      'pong-between': plain(Opcode.PONG, Buffer.from('q')),
      'text-between': plain(Opcode.TEXT, Buffer.from('{"op":"ping","t":3}')),
      'close-between': plain(Opcode.CLOSE, Buffer.from([0x03, 0xe8])),
    };
    if (between[fault]) frames.splice(1, 0, between[fault]!);
    if (fault === 'no-start') frames.shift();
    return frames;
  });

const closeFrame: fc.Arbitrary<RawFrame[]> = fc
  .tuple(fc.constantFrom(0, 999, 1000, 1001, 1004, 1005, 1006, 1015, 2999, 3000, 4999, 5000, 65535), fc.oneof(fc.constant(Buffer.alloc(0)), invalidUtf8, fc.constant(filled(130, 0x72))), fc.constantFrom('normal', 'empty', 'one-byte'))
  .map(([code, reason, form]) => {
    const body = form === 'empty' ? Buffer.alloc(0) : form === 'one-byte' ? Buffer.from([code & 0xff]) : Buffer.concat([Buffer.from([code >> 8, code & 0xff]), reason]);
    return [plain(Opcode.CLOSE, body)];
  });

export const rawFrames: fc.Arbitrary<RawFrame[]> = fc.oneof(
  { weight: 4, arbitrary: fc.array(oddFrame, { minLength: 1, maxLength: 3 }) },
  { weight: 3, arbitrary: fragmented },
  { weight: 1, arbitrary: closeFrame },
  { weight: 1, arbitrary: fc.constantFrom(126, 200).map((n) => [plain(Opcode.PING, filled(n, 0x70))]) },
);

// --- sessions ---------------------------------------------------------------------------

export function identity(variant: 'anonymous' | 'jwt', withProto: boolean): fc.Arbitrary<Identity> {
  const anonymous = fc.oneof(userName(withProto), badName).map((user): Identity => ({ kind: 'anonymous', user }));
  const token = tokenSpec(withProto).map((token): Identity => ({ kind: 'token', token }));
  const firstFrame = fc.constant<Identity>({ kind: 'first-frame' });
  return variant === 'anonymous'
    ? fc.oneof({ weight: 8, arbitrary: anonymous }, { weight: 1, arbitrary: firstFrame })
    : fc.oneof({ weight: 6, arbitrary: token }, { weight: 3, arbitrary: firstFrame }, { weight: 1, arbitrary: anonymous });
}

export interface SessionOptions {
  variant: 'anonymous' | 'jwt';
  /** Include WebSocket-level (raw) steps. */
  raw: boolean;
}

export function sessionSpec(options: SessionOptions): fc.Arbitrary<SessionSpec> {
  const frames = fc.array(frameSpec({ withProto: true }), { minLength: 1, maxLength: 6 }).map((list): Step => ({ kind: 'frames', frames: list }));
  const step = fc.oneof(
    { weight: 6, arbitrary: frames },
    { weight: options.raw ? 4 : 0, arbitrary: rawFrames.map((list): Step => ({ kind: 'raw', frames: list })) },
    { weight: 1, arbitrary: fc.integer({ min: 0, max: 40 }).map((ms): Step => ({ kind: 'pause', ms })) },
  );
  return fc.record({
    identity: identity(options.variant, true),
    path: fc.oneof({ weight: 9, arbitrary: fc.constant('/ws') }, { weight: 1, arbitrary: fc.constantFrom('/ws/', '/WS', '/ws?user=a&user=b', '/ws?token=', '/ws?user=', '/ws#x') }),
    // ocs.v1.msgpack sessions send their frames as binary frames (render.ts renderBinaryFrame).
    protocols: fc.oneof({ weight: 6, arbitrary: fc.constant<string[]>([]) }, { weight: 2, arbitrary: fc.constant<string[]>(['ocs.v1.msgpack']) }, { weight: 1, arbitrary: fc.constantFrom<string[]>(['ocs.v1.json'], ['x', 'ocs.v1.msgpack'], ['x', 'ocs.v1.json'], ['chat.v9']) }),
    steps: fc.array(step, { minLength: 1, maxLength: 6 }),
  });
}

// --- HTTP -------------------------------------------------------------------------------

const pathSegment = fc.oneof(
  fc.constantFrom('health', 'stats', 'ws', 'admin', 'dlq', 'requeue', 'x', '..', '.', '', '%', '%zz', '%41', '%C0%80', '%00', '%2F', '%25', 'é', '*', '?', '__proto__', 'constructor'),
  fc.stringMatching(/^[A-Za-z0-9%._~-]{0,12}$/),
);
const target = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom('/', '/health', '/stats', '/ws', '/admin', '/admin/', '/admin/dlq', '/admin/dlq/x', '/admin/dlq/x/requeue', '/admin/dlq/x/y/z', '*', '//admin/dlq', '/admin/dlq?limit=-1', '/admin/dlq?limit=1e999&after=%zz', '/health?x=%', '/ws?user=a', '/ws?user=a%20b', '/ws?user=%zz', '/ws?token=x.y.z', '/ws?token=%') },
  { weight: 4, arbitrary: fc.tuple(fc.constantFrom('', '/admin', '/admin/dlq'), fc.array(pathSegment, { maxLength: 4 }), fc.option(fc.string({ maxLength: 20 }))).map(([base, segs, q]) => `${base}/${segs.join('/')}${q === null ? '' : `?${q.replace(/[\s]/g, '')}`}`) },
);
const GOOD_KEY = 'dGhlIHNhbXBsZSBub25jZQ==';
const header: fc.Arbitrary<[string, string, number]> = fc.oneof(
  fc.constantFrom<[string, string, number]>(['Connection', 'close', 1], ['Connection', 'keep-alive', 1], ['Connection', 'Upgrade', 1], ['Upgrade', 'websocket', 1], ['Sec-WebSocket-Version', '13', 1], ['Sec-WebSocket-Key', GOOD_KEY, 1]),
  fc.constantFrom<[string, string, number]>(['Sec-WebSocket-Version', '8', 1], ['Sec-WebSocket-Version', 'x', 1], ['Sec-WebSocket-Key', '', 1], ['Sec-WebSocket-Key', 'bad', 1], ['Sec-WebSocket-Key', 'k', 5000], ['Sec-WebSocket-Protocol', 'ocs.v1.json', 1], ['Sec-WebSocket-Protocol', 'a, b, ocs.v1.msgpack', 1], ['Sec-WebSocket-Extensions', 'permessage-deflate; x=%', 1]),
  fc.constantFrom<[string, string, number]>(['Authorization', 'Bearer x', 1], ['Authorization', '', 1], ['Content-Length', '5', 1], ['Content-Length', '-5', 1], ['Content-Length', '99999999999', 1], ['Transfer-Encoding', 'chunked', 1], ['X-Long', 'v', 10_000], ['', 'empty-name', 1], ['X-Nul', 'a\u0000b', 1], ['Host', '', 1]),
);
export const httpRequest: fc.Arbitrary<HttpRequestSpec> = fc.record({
  method: fc.oneof({ weight: 6, arbitrary: fc.constantFrom('GET', 'POST', 'DELETE', 'PUT', 'OPTIONS') }, { weight: 1, arbitrary: fc.constantFrom('HEAD', 'PATCH', 'TRACE', 'CONNECT', 'get', 'FOO', '') }),
  target,
  longPath: fc.oneof({ weight: 12, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.constantFrom(8_000, 70_000) }),
  version: fc.oneof({ weight: 8, arbitrary: fc.constant('HTTP/1.1') }, { weight: 1, arbitrary: fc.constantFrom('HTTP/1.0', 'HTTP/2.0', 'HTTP/1.1x', '') }),
  headers: fc.array(header, { maxLength: 5 }),
  body: fc.oneof({ weight: 4, arbitrary: fc.constant('') }, { weight: 1, arbitrary: fc.string({ maxLength: 30 }) }),
});
/** One to three requests written in one TCP write. */
export const httpRequests = fc.array(httpRequest, { minLength: 1, maxLength: 3 });
