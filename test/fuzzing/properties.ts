/**
 * The fuzz properties, shared by `npm test` (test/fuzz-server.test.ts, a bounded number of
 * runs) and `npm run fuzz` (scripts/fuzz.ts, for minutes). Each run plays one input on a
 * fresh connection and then asks the target what went wrong since the last run: the process
 * exited, a shard died or logged an error, something went to stderr, a witness missed a round
 * trip or a ping (a wedged shard), an answer carried a code outside the table.
 */
import fc from 'fast-check';
import { httpRequests, sessionSpec, type SessionSpec } from './arbitraries.js';
import { exchange, judgeHttp } from './http.js';
import { hitsKnownDefect, hitsKnownHttpDefect } from './known-defects.js';
import { runSession } from './session.js';
import type { FuzzTarget } from './target.js';

export class FuzzFailure extends Error {
  constructor(readonly problems: readonly string[]) {
    super(problems.join('\n'));
    this.name = 'FuzzFailure';
  }
}

export interface BuildOptions {
  /** Also generate the inputs of the known defects (known-defects.ts), which the properties leave out by default. */
  includeKnown: boolean;
}

export interface FuzzProperty {
  name: string;
  /** Runs in `npm test`, per server variant (`cluster`: anonymous users on a node of a cluster). */
  runs: { anonymous: number; jwt: number; cluster: number };
  build(target: FuzzTarget, options: BuildOptions): fc.IAsyncProperty<[unknown]>;
}

function fail(problems: string[]): void {
  if (problems.length > 0) throw new FuzzFailure(problems);
}

function sessions(raw: boolean) {
  return (target: FuzzTarget, { includeKnown }: BuildOptions): fc.IAsyncProperty<[SessionSpec]> => {
    const specs = sessionSpec({ variant: target.variant, raw });
    return fc.asyncProperty(includeKnown ? specs : specs.filter((s) => hitsKnownDefect(s) === null), async (spec) => {
      await target.ensureUp();
      // Raw steps may leave the framing broken (a declared length still waiting for its bytes), so no answer is owed then.
      const { problems } = await runSession(spec, { port: target.port, secret: target.secret, expectAnswer: !raw });
      fail([...problems, ...(await target.checkpoint())]);
    });
  };
}

export const PROPERTIES: FuzzProperty[] = [
  {
    name: 'ocs.v1 frames: valid ops with wrong types, hostile names and numbers, byte mutations, op sequences, pipelined writes',
    runs: { anonymous: 150, jwt: 60, cluster: 80 },
    build: sessions(false),
  },
  {
    name: 'WebSocket frames: binary, fragmented, invalid UTF-8, control frames, reserved opcodes and bits, unmasked, lying lengths',
    runs: { anonymous: 120, jwt: 50, cluster: 60 },
    build: sessions(true),
  },
  {
    name: 'HTTP requests: methods, paths with %, %zz and thousands of characters, odd headers, bad upgrades, several per write',
    runs: { anonymous: 60, jwt: 20, cluster: 30 },
    build(target, { includeKnown }) {
      const requests = includeKnown ? httpRequests : httpRequests.filter((reqs) => reqs.every((req) => hitsKnownHttpDefect(req) === null));
      return fc.asyncProperty(requests, async (reqs) => {
        await target.ensureUp();
        const { responses, rest } = await exchange(target.port, reqs);
        fail([...judgeHttp(responses, rest), ...(await target.checkpoint())]);
      });
    },
  },
];

/** FUZZ_SEED, or a fixed seed so that `npm test` is repeatable. */
export function fuzzSeed(): number {
  const seed = Number(process.env.FUZZ_SEED ?? 20_260_808);
  if (!Number.isInteger(seed)) throw new Error(`FUZZ_SEED must be an integer, got ${process.env.FUZZ_SEED}`);
  return seed;
}
