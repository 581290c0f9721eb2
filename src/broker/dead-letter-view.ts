/**
 * How the dead-letter API shows a letter, as JSON text: one function, run by the primary or by
 * a codec pool thread (src/codec/tasks.ts) when a page is large.
 */
import { dataTooDeep } from '../protocol/json-codec.js';
import type { DeadLetter } from '../store/messages.js';

/**
 * A letter as the API shows it: `data` parsed, or as the stored text when it is not JSON or
 * nests deeper than a frame may (stored before the limit, or by a store shared with an older
 * version): encoding that again would overflow the stack.
 */
export function showDead(letter: DeadLetter): Record<string, unknown> {
  let data: unknown = letter.data;
  try {
    const parsed: unknown = JSON.parse(letter.data);
    if (!dataTooDeep(parsed)) data = parsed;
  } catch {
    // kept as text
  }
  const kind = letter.target.slice(0, 2);
  return {
    id: letter.id,
    kind: kind === 'u:' ? 'send' : kind === 'g:' ? 'any' : 'pub',
    to: letter.target.slice(2),
    from: letter.from,
    group: letter.group,
    data,
    pri: letter.pri,
    ts: letter.ts,
    attempts: letter.attempts,
    reason: letter.reason,
    failedAt: letter.failedAt,
  };
}

/** Each letter as the JSON text of its item in a list page. */
export function renderDeadLetters(letters: readonly DeadLetter[]): string[] {
  return letters.map((letter) => JSON.stringify(showDead(letter)));
}
