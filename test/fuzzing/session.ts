/**
 * Plays one fuzz session on a fresh connection (tools/wsclient for the handshake and for
 * reading; raw writes for everything sent) and judges what came back: every `err` carries a
 * code from the table, every close code is one the protocol names, nothing but frames of the
 * negotiated encoding arrive (JSON text, or ocs.v1.msgpack binary frames that decode), and a
 * session of well-framed frames gets its closing ping answered. On an ocs.v1.msgpack
 * connection the session's frames go as binary frames (render.ts renderBinaryFrame).
 */
import { inflateLz4 } from '../../src/codec/lz4.js';
import { CloseCodes, ErrorCodes, isErrorCode } from '../../src/protocol/errors.js';
import { MSGPACK_PROTOCOL, readFrame, writeFrame } from '../../src/protocol/msgpack-codec.js';
import { connectWs, WsHandshakeError } from '../../tools/wsclient/client.js';
import type { SessionSpec, TokenSpec } from './arbitraries.js';
import { Opcode, frame, writeRaw, type RawFrame } from '../helpers/raw-ws.js';
import { renderBinaryFrame, renderFrame, signAll, tokensIn, type RenderEnv } from './render.js';

/** Codes that may travel in an `err` frame: the table without the start-up codes. */
export const WIRE_CODES = new Set(Object.keys(ErrorCodes).filter((code) => code !== 'E_CONFIG' && code !== 'E_STARTUP'));

/**
 * Close codes a fuzzed connection may see: the table's, a normal close, the transport's
 * own (protocol error, no status, connection cut, invalid UTF-8) and the idle close
 * (PROTOCOL.md). 1001 and 1012 mean a shard went down, so they are not among them.
 */
export const ALLOWED_CLOSES = new Set<number>([
  ...Object.values(ErrorCodes)
    .map((e) => e.close)
    .filter((c) => c !== 0),
  CloseCodes.NORMAL,
  1002,
  1005,
  1006,
  1007,
  4408,
]);

/** Statuses a refused upgrade may carry (PROTOCOL.md and the HTTP routes). */
const UPGRADE_REFUSALS = new Set([400, 401, 404, 503]);

export type Frame = Record<string, unknown>;

export interface SessionOutcome {
  problems: string[];
  frames: Frame[];
  close: { code: number; reason: string } | null;
}

export interface SessionEnv {
  port: number;
  /** Secret the server verifies tokens with (the anonymous server has none; tokens are signed anyway). */
  secret: string;
  /** Expect an answer to the closing ping (false when raw steps may have broken the framing). */
  expectAnswer: boolean;
}

const ANSWER_TIMEOUT_MS = 2000;
const SENTINEL_T = 424242.5;

export async function runSession(spec: SessionSpec, env: SessionEnv): Promise<SessionOutcome> {
  const frameSpecs = spec.steps.flatMap((s) => (s.kind === 'frames' ? s.frames : []));
  const tokens = await signAll([...(spec.identity.kind === 'token' ? [spec.identity.token] : []), ...tokensIn(frameSpecs)], env.secret);
  const problems: string[] = [];
  const frames: Frame[] = [];
  const sentCloseCodes = new Set<number>();
  let lastId: string | null = null;
  let close: { code: number; reason: string } | null = null;
  let handshakeError = null as Error | null;
  let wake: (() => void) | null = null;
  const poke = (): void => wake?.();

  let query = '';
  if (spec.identity.kind === 'anonymous') query = `user=${encodeURIComponent(spec.identity.user)}`;
  if (spec.identity.kind === 'token') query = `token=${tokens.get(spec.identity.token)}`;
  const path = query === '' ? spec.path : `${spec.path}${spec.path.includes('?') ? '&' : '?'}${query}`;

  let opened = false;
  const client = connectWs({
    host: '127.0.0.1',
    port: env.port,
    path,
    protocols: spec.protocols,
    copyPayloads: true,
    handshakeTimeoutMs: 5000,
    onOpen: () => {
      opened = true;
      poke();
    },
    onMessage: (payload, isBinary) => {
      const binary = client.protocol === MSGPACK_PROTOCOL;
      if (isBinary !== binary) {
        problems.push(`server sent a ${isBinary ? 'binary' : 'text'} frame on a ${binary ? 'msgpack' : 'JSON'} connection (${payload.length} bytes)`);
        return;
      }
      let value: unknown;
      if (binary) {
        value = readFrame(payload, 1 << 30, inflateLz4);
        if (typeof value === 'string') {
          problems.push(`server sent a binary frame that does not decode: ${value}`);
          return;
        }
      } else {
        try {
          value = JSON.parse(payload.toString('utf8'));
        } catch {
          problems.push(`server sent a text frame that is not JSON: ${payload.toString('utf8').slice(0, 120)}`);
          return;
        }
      }
      const f = value as Frame;
      frames.push(f);
      const msgs = f.op === 'batch' && Array.isArray(f.msgs) ? (f.msgs as Frame[]) : [f];
      for (const m of msgs) if (m.op === 'msg' && typeof m.id === 'string') lastId = m.id;
      poke();
    },
    onClose: (code, reason) => {
      close = { code, reason };
      poke();
    },
    onError: (err) => {
      if (!opened) handshakeError = err;
    },
  });
  const until = (done: () => boolean, ms: number): Promise<boolean> =>
    new Promise((resolve) => {
      const timer = setTimeout(() => finish(false), ms);
      const finish = (result: boolean): void => {
        clearTimeout(timer);
        wake = null;
        resolve(result);
      };
      wake = () => {
        if (done()) finish(true);
      };
      wake();
    });

  await until(() => opened || close !== null, 6000);
  if (!opened) {
    const status = handshakeError instanceof WsHandshakeError ? handshakeError.httpStatus : null;
    if (status === null || !UPGRADE_REFUSALS.has(status)) problems.push(`upgrade failed: ${String(handshakeError ?? 'no answer')}`);
    return { problems, frames, close };
  }

  for (const step of spec.steps) {
    if (close !== null) break;
    if (step.kind === 'pause') {
      await new Promise((resolve) => setTimeout(resolve, step.ms));
      continue;
    }
    let out: RawFrame[];
    if (step.kind === 'raw') {
      out = step.frames;
      for (const f of out) if (f.opcode === Opcode.CLOSE && f.payload.length >= 2) sentCloseCodes.add((f.payload[0]! << 8) | f.payload[1]!);
    } else {
      const renderEnv: RenderEnv = { now: Date.now(), lastId, tokens };
      out = step.frames.map((f) => (client.protocol === MSGPACK_PROTOCOL ? frame(Opcode.BINARY, renderBinaryFrame(f, renderEnv)) : frame(Opcode.TEXT, renderFrame(f, renderEnv))));
    }
    writeRaw(client, out);
    // Let the answers in before the next step, so `lastId` can refer to them.
    await new Promise((resolve) => setImmediate(resolve));
  }

  if (close === null) {
    const before = frames.length;
    const ping = { op: 'ping', t: SENTINEL_T };
    writeRaw(client, [client.protocol === MSGPACK_PROTOCOL ? frame(Opcode.BINARY, writeFrame(ping)) : frame(Opcode.TEXT, JSON.stringify(ping))]);
    // The answer is a pong, or the refusal of the ping itself when the session went over the rate limit.
    const answer = (f: Frame): boolean => (f.op === 'pong' && f.t === SENTINEL_T) || (f.op === 'err' && f.code === 'E_RATE_LIMITED');
    const answered = await until(() => close !== null || frames.slice(before).some(answer), ANSWER_TIMEOUT_MS);
    if (!answered && env.expectAnswer) {
      problems.push(`no pong and no close within ${ANSWER_TIMEOUT_MS} ms of a ping on an open connection; last frames: ${JSON.stringify(frames.slice(-3)).slice(0, 300)}`);
    }
  }
  if (close === null) {
    client.destroy();
    await until(() => close !== null, 2000);
  }
  problems.push(...judge(frames, close, sentCloseCodes));
  return { problems, frames, close };
}

function judge(frames: readonly Frame[], close: { code: number; reason: string } | null, sentCloseCodes: ReadonlySet<number>): string[] {
  const problems: string[] = [];
  for (const f of frames) {
    if (f.op !== 'err') continue;
    if (!isErrorCode(f.code) || !WIRE_CODES.has(f.code)) problems.push(`err frame with a code not in the table: ${JSON.stringify(f).slice(0, 200)}`);
    else if (f.code === 'E_INTERNAL') problems.push(`E_INTERNAL (the server failed on a frame): ${String(f.message).slice(0, 200)}`);
  }
  const welcomes = frames.filter((f) => f.op === 'welcome').length;
  if (welcomes > 1) problems.push(`${welcomes} welcome frames on one connection`);
  if (close !== null && !ALLOWED_CLOSES.has(close.code) && !sentCloseCodes.has(close.code)) {
    problems.push(`closed with code ${close.code} (${close.reason.slice(0, 80)}), which the protocol does not name for this`);
  }
  return problems;
}
