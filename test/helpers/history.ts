/** What tests of group history do with a client: join (recovering or not) and read messages in order. */
import type { Frame, TestClient } from './client.js';

/** The msg frames in `frame` (a msg, or a batch of them). */
export function msgsOf(frame: Frame): Frame[] {
  if (frame.op === 'msg') return [frame];
  if (frame.op === 'batch') return frame.msgs as Frame[];
  return [];
}

/**
 * Joins `group` (with `since` when given): the messages that came before `joined` (the replay),
 * and `joined`. Throws on an `err`. Each frame is awaited 15 s: a herd of joins recovering at
 * once is answered a few MB at a time, and 5 s was passed on a loaded 2-core machine.
 */
export async function joinGroup(client: TestClient, group: string, since?: { offset: number; epoch: string }): Promise<{ replayed: Frame[]; joined: Frame }> {
  const ref = `j-${Math.random()}`;
  client.send({ op: 'join', group, ref, ...(since && { since }) });
  const replayed: Frame[] = [];
  for (;;) {
    const frame = await client.next(undefined, 15_000);
    if (frame.op === 'joined' && frame.ref === ref) return { replayed, joined: frame };
    if (frame.op === 'err') throw Object.assign(new Error(`join refused: ${String(frame.message)}`), { frame });
    replayed.push(...msgsOf(frame));
  }
}

/** The next `count` msgs of the client, in order of arrival (batches unpacked). */
export { nextMsgs } from './messaging.js';
