/**
 * Entry of a codec pool thread (piscina, src/codec/pool.ts): one task in, its result out, the
 * bytes it made moved (not copied) back to the thread that asked.
 */
import { move, transferableSymbol, valueSymbol } from 'piscina';
import { runTask, transferablesOf, type CodecTask } from '../src/codec/tasks.js';

export default function codecTask(task: CodecTask): unknown {
  const result = runTask(task);
  return move({ [transferableSymbol]: transferablesOf(result), [valueSymbol]: result } as never);
}
