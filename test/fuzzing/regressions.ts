/**
 * One regression case per defect in known-defects.ts: the smallest input that shows it, run
 * against a server of its own (some of these end the process). A case returns what went
 * wrong; an empty list means the defect is fixed.
 */
import { MAX_WEIGHT } from '../../src/config/delivery-schema.js';
import { MAX_DATA_DEPTH } from '../../src/protocol/json-codec.js';
import { getJson, type Frame, type TestClient } from '../helpers/client.js';
import { until } from '../helpers/messaging.js';
import type { FrameSpec, HttpRequestSpec, SessionSpec, TokenSpec, Value } from './arbitraries.js';
import { exchange, judgeHttp } from './http.js';
import { DEFECTS, type Defect } from './known-defects.js';
import { runSession, type SessionOutcome } from './session.js';
import type { FuzzTarget, Variant } from './target.js';

export interface Regression {
  defect: Defect;
  /** What the case checks, as a specification. */
  name: string;
  variant: Variant;
  run(target: FuzzTarget): Promise<string[]>;
}

const text = (value: unknown): Value => ({ text: JSON.stringify(value) });
/** A frame from plain fields (tokens as `{ token }` values). */
function frameOf(fields: Record<string, Value | string | number>): FrameSpec {
  return { fields: Object.entries(fields).map(([key, v]) => [key, typeof v === 'object' ? v : text(v)]), mutation: null };
}
const tokenFor = (sub: string): TokenSpec => ({ sub, expiresIn: 3600, groups: undefined, weight: undefined, wrongSecret: false });
const token = (sub: string): Value => ({ token: tokenFor(sub) });
const get = (method: string, target: string): HttpRequestSpec => ({ method, target, longPath: 0, version: 'HTTP/1.1', headers: [], body: '' });

function session(target: FuzzTarget, spec: SessionSpec): Promise<SessionOutcome> {
  return runSession(spec, { port: target.port, secret: target.secret, expectAnswer: true });
}

export const REGRESSIONS: Regression[] = [
  {
    defect: DEFECTS.adminPercent,
    name: 'an /admin path with a bad %-escape gets a coded 4xx and the process stays up',
    variant: 'anonymous',
    async run(target) {
      const problems: string[] = [];
      for (const req of [get('GET', '/admin/dlq/%'), get('GET', '/admin/dlq/%zz'), get('DELETE', '/admin/dlq/%C0%80'), get('POST', '/admin/dlq/%E0%A4%A/requeue')]) {
        // Each must be answered: wait for it as long as the exchange's timeout (a fresh server on a busy machine can be slow).
        const { responses, rest } = await exchange(target.port, [req], 2000);
        if (responses.length === 0) problems.push(`${req.method} ${req.target}: no answer`);
        else if (responses[0]!.status < 400 || responses[0]!.status >= 500) problems.push(`${req.method} ${req.target}: HTTP ${responses[0]!.status}`);
        problems.push(...judgeHttp(responses, rest));
        problems.push(...(await target.checkpoint()));
        if (!target.alive()) break;
      }
      return problems;
    },
  },
  {
    defect: DEFECTS.doubleAuth,
    name: 'two auth frames in one write: one welcome; a message to the first user after the close leaves the shard up',
    variant: 'jwt',
    async run(target) {
      const first = await session(target, { identity: { kind: 'first-frame' }, path: '/ws', protocols: [], steps: [{ kind: 'frames', frames: [frameOf({ op: 'auth', token: token('alice') }), frameOf({ op: 'auth', token: token('bob') })] }, { kind: 'pause', ms: 300 }] });
      const then = await session(target, { identity: { kind: 'token', token: tokenFor('sender') }, path: '/ws', protocols: [], steps: [{ kind: 'frames', frames: [frameOf({ op: 'send', to: 'alice', data: 1, ref: 's' })] }, { kind: 'pause', ms: 300 }] });
      return [...first.problems, ...then.problems, ...(await target.checkpoint())];
    },
  },
  {
    defect: DEFECTS.protoWeighted,
    name: 'weighted any reaches one member per message when members are named __proto__ and constructor',
    variant: 'anonymous',
    async run(target) {
      return weightedAnyDelivers(target, await Promise.all(['__proto__', 'constructor', 'plain'].map((user) => target.open(user))));
    },
  },
  {
    defect: DEFECTS.hugeWeight,
    name: 'a weight claim of 1e308 is refused with a coded 401; weighted any reaches one member per message when members carry the largest weight (1e6)',
    variant: 'jwt',
    async run(target) {
      const problems: string[] = [];
      const refusal = await target.open('heavy-0', { weight: 1e308 }).then(
        (client) => {
          client.close();
          return 'accepted';
        },
        (err: { status?: number; body?: string }) => `HTTP ${err.status} ${err.body}`,
      );
      if (!/^HTTP 401 .*E_UNAUTHORIZED.*weight claim/.test(refusal)) problems.push(`a token with weight 1e308: ${refusal.slice(0, 200)}`);
      const members = [await target.open('heavy-1', { weight: MAX_WEIGHT }), await target.open('heavy-2', { weight: MAX_WEIGHT }), await target.open('light')];
      return [...problems, ...(await weightedAnyDelivers(target, members))];
    },
  },
  {
    defect: DEFECTS.farFutureAt,
    name: 'send with at 30 days ahead is stored and arms no timer beyond the 32-bit range',
    variant: 'anonymous',
    async run(target) {
      const at = { nowPlus: 30 * 86_400_000 };
      const { problems } = await session(target, { identity: { kind: 'anonymous', user: 'planner' }, path: '/ws', protocols: [], steps: [{ kind: 'frames', frames: [frameOf({ op: 'send', to: 'later', data: 1, at, ref: 'f' })] }, { kind: 'pause', ms: 500 }] });
      return [...problems, ...(await target.checkpoint())];
    },
  },
  {
    defect: DEFECTS.framesBehindAuth,
    name: 'auth, join and ping in one write: welcome, joined and pong, no err',
    variant: 'jwt',
    async run(target) {
      const { problems, frames } = await session(target, {
        identity: { kind: 'first-frame' },
        path: '/ws',
        protocols: [],
        steps: [{ kind: 'frames', frames: [frameOf({ op: 'auth', token: token('carol') }), frameOf({ op: 'join', group: 'g0', ref: 'j' }), frameOf({ op: 'ping', t: 1 })] }],
      });
      for (const op of ['welcome', 'joined', 'pong']) if (!frames.some((f) => f.op === op)) problems.push(`no ${op}; got ${JSON.stringify(frames).slice(0, 300)}`);
      for (const f of frames) if (f.op === 'err') problems.push(`err ${String(f.code)}: ${String(f.message)}`);
      return [...problems, ...(await target.checkpoint())];
    },
  },
  {
    defect: DEFECTS.httpCodes,
    name: 'HTTP refusals (unknown path, unknown dead letter) are 404 with a code from the table (HttpCodes)',
    variant: 'anonymous',
    async run(target) {
      const problems: string[] = [];
      for (const req of [get('GET', '/nope'), get('GET', '/admin/dlq/no-such-id')]) {
        const { responses, rest } = await exchange(target.port, [req]);
        if (responses[0]?.status !== 404) problems.push(`${req.method} ${req.target}: ${responses[0] ? `HTTP ${responses[0].status}` : 'no answer'}`);
        problems.push(...judgeHttp(responses, rest));
      }
      return [...problems, ...(await target.checkpoint())];
    },
  },
  {
    defect: DEFECTS.deepData,
    name: 'a pub and a send whose data is nested 20 000 levels deep (40 KB) get a coded refusal (or go through), never E_INTERNAL',
    variant: 'anonymous',
    async run(target) {
      const deep: Value = { nest: [20_000, true] };
      const { problems } = await session(target, {
        identity: { kind: 'anonymous', user: 'nester' },
        path: '/ws',
        protocols: [],
        steps: [{ kind: 'frames', frames: [frameOf({ op: 'join', group: 'g0' }), frameOf({ op: 'pub', group: 'g0', data: deep }), frameOf({ op: 'send', to: 'nester', data: deep })] }],
      });
      return [...problems, ...(await target.checkpoint())];
    },
  },
  {
    defect: DEFECTS.deepDeadLetter,
    name: 'data nested 8 000 levels deep cannot become a dead letter (E_BAD_FRAME); the deepest a send may carry (63) is dead-lettered and listed by GET /admin/dlq',
    variant: 'anonymous',
    async run(target) {
      // The recipient is online and never acknowledges: two deliveries, then the dead-letter queue.
      // (A letter stored deeper, before the limit, is shown as text: test/broker-dlq-admin.test.ts.)
      const deepest: Value = { nest: [MAX_DATA_DEPTH, true] };
      const rcpt = await target.open('deep-rcpt');
      const sent = await session(target, {
        identity: { kind: 'anonymous', user: 'deep-sender' },
        path: '/ws',
        protocols: [],
        steps: [{ kind: 'frames', frames: [frameOf({ op: 'send', to: 'deep-rcpt', data: { nest: [8000, true] }, ref: 'too-deep' }), frameOf({ op: 'send', to: 'deep-rcpt', data: deepest, ref: 'deepest' })] }],
      });
      const problems = [...sent.problems];
      const refused = sent.frames.find((f) => f.ref === 'too-deep');
      if (refused?.op !== 'err' || refused.code !== 'E_BAD_FRAME') problems.push(`a send nested 8 000 deep: ${JSON.stringify(refused)}`);
      await until(async () => ((await getJson(target.port, '/stats')).body.messaging as Record<string, number>).dead_lettered! > 0 || undefined, 'the dead letter');
      rcpt.close();
      const { responses, rest } = await exchange(target.port, [get('GET', '/admin/dlq')]);
      problems.push(...judgeHttp(responses, rest));
      const items = responses[0]?.status === 200 ? (JSON.parse(responses[0].body) as { items: Array<{ to: string; data: unknown }> }).items : null;
      if (items === null) problems.push(`GET /admin/dlq: ${responses[0] ? `HTTP ${responses[0].status}` : 'no answer'}`);
      else if (items.length !== 1 || items[0]!.to !== 'deep-rcpt' || JSON.stringify(items[0]!.data) !== '['.repeat(MAX_DATA_DEPTH) + ']'.repeat(MAX_DATA_DEPTH)) problems.push(`GET /admin/dlq listed ${JSON.stringify(items).slice(0, 300)}`);
      return [...problems, ...(await target.checkpoint())];
    },
  },
  {
    defect: DEFECTS.longAdminId,
    name: 'GET /admin/dlq/ID with an 8 000-character ID gets a coded 404',
    variant: 'anonymous',
    async run(target) {
      const { responses, rest } = await exchange(target.port, [{ ...get('GET', '/admin/dlq/'), longPath: 8000 }]);
      const problems = judgeHttp(responses, rest);
      if (responses[0]?.status !== 404) problems.push(`HTTP ${responses[0]?.status ?? 'no answer'}`);
      return [...problems, ...(await target.checkpoint())];
    },
  },
];

/** The members join one group; the last sends weighted `any` to it; every message must reach one of them. */
async function weightedAnyDelivers(target: FuzzTarget, members: readonly TestClient[]): Promise<string[]> {
  for (const m of members) {
    m.send({ op: 'join', group: 'w0', ref: 'j' });
    await m.next((f) => f.op === 'joined');
  }
  const count = 8;
  for (let i = 0; i < count; i++) members.at(-1)!.send({ op: 'any', group: 'w0', strategy: 'weighted', data: { i }, ref: `a${i}` });
  const delivered = await countDeliveries(members, count, 1500);
  for (const m of members) m.close();
  const problems = await target.checkpoint();
  if (delivered < count) problems.push(`${delivered} of ${count} acknowledged weighted any messages were delivered within 1.5 s`);
  return problems;
}

/** Counts distinct messages (by data; alone or in a batch) across `clients` until `count` or the timeout, acknowledging each. */
async function countDeliveries(clients: readonly TestClient[], count: number, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  const seen = new Set<string>();
  while (seen.size < count && Date.now() < deadline) {
    for (const client of clients) {
      for (const f of client.frames.splice(0)) {
        const msgs = f.op === 'batch' ? (f.msgs as Frame[]) : [f];
        for (const m of msgs) {
          if (m.op !== 'msg') continue;
          seen.add(JSON.stringify(m.data));
          client.send({ op: 'ack', id: m.id });
        }
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return seen.size;
}
