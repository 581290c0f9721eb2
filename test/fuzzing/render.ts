/**
 * Turns the fuzzer's specs into bytes: frames into JSON text (then mutated), tokens into
 * signed JWTs, HTTP requests into request heads.
 */
import { deflateLz4 } from '../../src/codec/lz4.js';
import { packValue } from '../../src/protocol/msgpack-codec.js';
import { plainFrame, wrapFrame } from '../../src/protocol/wire.js';
import { signToken } from '../helpers/tokens.js';
import type { FrameSpec, HttpRequestSpec, Mutation, TokenSpec, Value } from './arbitraries.js';

export interface RenderEnv {
  now: number;
  lastId: string | null;
  tokens: ReadonlyMap<TokenSpec, string>;
}

export function renderValue(value: Value, env: RenderEnv): string {
  if ('text' in value) return value.text;
  if ('repeat' in value) return JSON.stringify(value.repeat[0].repeat(value.repeat[1]));
  if ('nest' in value) {
    const [depth, arrays] = value.nest;
    return arrays ? '['.repeat(depth) + ']'.repeat(depth) : '{"a":'.repeat(depth) + '1' + '}'.repeat(depth);
  }
  if ('nowPlus' in value) return String(env.now + value.nowPlus);
  if ('token' in value) return JSON.stringify(env.tokens.get(value.token) ?? '');
  return JSON.stringify(env.lastId ?? 'no-id-yet');
}

/** The frame's JSON text as UTF-8, mutated at the byte level if the spec says so. */
export function renderFrame(spec: FrameSpec, env: RenderEnv): Buffer {
  const body = '{' + spec.fields.map(([key, value]) => `${JSON.stringify(key)}:${renderValue(value, env)}`).join(',') + '}';
  const bytes = Buffer.from(body);
  return spec.mutation ? mutate(bytes, spec.mutation) : bytes;
}

/**
 * The frame as an ocs.v1.msgpack binary frame: the JSON text parsed (1e999 becomes Infinity, a
 * duplicate key keeps its last value, `__proto__` stays an own key) and packed, the mutation
 * applied to the MessagePack bytes, and, for one frame in three, LZ4 over the result. Text that
 * no longer parses is sent as it is behind a flags byte: garbage MessagePack.
 */
export function renderBinaryFrame(spec: FrameSpec, env: RenderEnv): Buffer {
  const text = renderFrame({ ...spec, mutation: null }, env);
  let body: Buffer;
  try {
    body = Buffer.from(packValue(JSON.parse(text.toString('utf8'))));
  } catch {
    body = text;
  }
  if (spec.mutation) body = mutate(body, spec.mutation);
  const compress = spec.mutation === null ? text.length % 3 === 0 : spec.mutation.bytes.length % 3 === 0;
  return Buffer.from(compress ? wrapFrame(body, deflateLz4, 0) : plainFrame(body));
}

export function mutate(bytes: Buffer, m: Mutation): Buffer {
  const i = Math.min(bytes.length, Math.floor(m.at * bytes.length));
  const extra = Buffer.from(m.bytes);
  switch (m.kind) {
    case 'truncate':
      return bytes.subarray(0, i);
    case 'flip': {
      const out = Buffer.from(bytes);
      if (i < out.length) out[i]! ^= extra[0]! | 1;
      return out;
    }
    case 'insert':
      return Buffer.concat([bytes.subarray(0, i), extra, bytes.subarray(i)]);
    case 'delete':
      return Buffer.concat([bytes.subarray(0, i), bytes.subarray(i + extra.length)]);
    case 'wrap':
      return Buffer.concat([Buffer.from('['), bytes, Buffer.from(']')]);
  }
}

/** Every token a value of these frames needs. */
export function tokensIn(frames: readonly FrameSpec[]): TokenSpec[] {
  return frames.flatMap((f) => f.fields.flatMap(([, v]) => ('token' in v ? [v.token] : [])));
}

export async function signAll(specs: readonly TokenSpec[], secret: string): Promise<Map<TokenSpec, string>> {
  const out = new Map<TokenSpec, string>();
  for (const spec of specs) out.set(spec, await sign(spec, secret));
  return out;
}

async function sign(spec: TokenSpec, secret: string): Promise<string> {
  const claims: Record<string, unknown> = {};
  if (spec.groups !== undefined) claims.groups = spec.groups;
  if (spec.weight !== undefined) claims.weight = spec.weight;
  return signToken(claims, {
    ...(spec.sub === null ? {} : { sub: spec.sub }),
    exp: Math.floor(Date.now() / 1000) + spec.expiresIn,
    secret: spec.wrongSecret ? `another-${secret}` : secret,
  });
}

export function renderHttp(req: HttpRequestSpec): Buffer {
  let head = `${req.method} ${req.target}${'a'.repeat(req.longPath)} ${req.version}\r\nHost: 127.0.0.1\r\n`;
  for (const [name, value, times] of req.headers) head += `${name}: ${value.repeat(times)}\r\n`;
  return Buffer.from(`${head}\r\n${req.body}`);
}
