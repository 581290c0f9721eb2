/**
 * Processors: application functions registered per `data.type` that see a `pub`, `send` or
 * `any` before it is routed, and may change it, drop it (null) or throw (the broker then
 * dead-letters it). Sync or async alike.
 */
import type { Incoming } from './ids.js';

/** What a processor sees, and may return changed; `null` drops the message. */
export interface ProcessorMessage {
  kind: 'pub' | 'send' | 'any';
  from: string;
  /** `send`: the recipient. */
  to?: string;
  /** `pub` and `any`: the group. */
  group?: string;
  data: unknown;
  pri: number;
}
export type Processor = (message: ProcessorMessage) => ProcessorMessage | null | undefined | Promise<ProcessorMessage | null | undefined>;

export class Processors {
  private readonly byType = new Map<string, Processor>();

  register(type: string, processor: Processor): void {
    this.byType.set(type, processor);
  }

  /** The registered `data.type` values: the shards detour only these through the broker. */
  types(): string[] {
    return [...this.byType.keys()];
  }

  has(type: string | null): type is string {
    return type !== null && this.byType.has(type);
  }

  /**
   * Passes `incoming` through the processor for `type` (sync or async): `outcome.pass` gets the
   * data (as JSON text) and pri it returned, or the message unchanged for undefined;
   * `outcome.drop` is called for null, `outcome.fail` with the reason when it threw or its
   * promise rejected.
   */
  run(type: string, incoming: Incoming, outcome: ProcessorOutcome): void {
    const processor = this.byType.get(type)!;
    const message = processorMessage(incoming);
    const named = `processor for type ${JSON.stringify(type)}`;
    const fail = (err: unknown): void => outcome.fail(`${named} threw: ${describe(err)}`);
    let out;
    try {
      out = processor(message);
    } catch (err) {
      return fail(err);
    }
    const finish = (result: ProcessorMessage | null | undefined): void => {
      if (result === null) return outcome.drop();
      const changed = result === undefined ? message : result;
      let dataJson: string;
      let pri: number;
      try {
        // A BigInt or a cycle cannot be JSON: JSON.stringify throws, and the message cannot go on.
        dataJson = JSON.stringify(changed.data) ?? 'null';
        pri = clampPri(changed.pri);
      } catch (err) {
        return outcome.fail(`${named} returned data that cannot be JSON: ${describe(err)}`);
      }
      outcome.pass(dataJson, pri);
    };
    if (out instanceof Promise) out.then(finish, fail);
    else finish(out);
  }
}

export interface ProcessorOutcome {
  pass(dataJson: string, pri: number): void;
  drop(): void;
  fail(reason: string): void;
}

/** What a processor sees of `incoming`: its data parsed, its recipient named by kind. */
function processorMessage(incoming: Incoming): ProcessorMessage {
  const kind = incoming.target.startsWith('u:') ? 'send' : incoming.target.startsWith('g:') ? 'any' : 'pub';
  const recipient = kind === 'send' ? { to: incoming.target.slice(2) } : { group: incoming.group! };
  return { kind, from: incoming.from, ...recipient, data: JSON.parse(incoming.data), pri: incoming.pri };
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** A processor's `pri`, or NORMAL when it returned something that is not a priority. */
function clampPri(pri: unknown): number {
  return pri === 0 || pri === 1 || pri === 2 || pri === 3 ? pri : 1;
}
