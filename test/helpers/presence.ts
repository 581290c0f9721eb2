/** Reading presence events (joins and leaves told to watchers) off a test client. */
import type { Frame, TestClient } from './client.js';

/** A presence event of `group`: a `presence` frame that answers no request (no ref). */
export const isEvent = (group: string) => (f: Frame) => f.op === 'presence' && f.group === group && f.ref === undefined;

/** Presence events of `group` received until `quietMs` pass without one, merged: who came and who went. */
export async function eventsUntilQuiet(client: TestClient, group: string, quietMs: number): Promise<{ joins: string[]; leaves: string[]; frames: number }> {
  const joins: string[] = [];
  const leaves: string[] = [];
  let frames = 0;
  for (;;) {
    let event: Frame;
    try {
      event = await client.next(isEvent(group), quietMs);
    } catch {
      return { joins: joins.sort(), leaves: leaves.sort(), frames };
    }
    frames++;
    joins.push(...(event.joins as string[]));
    leaves.push(...(event.leaves as string[]));
  }
}
