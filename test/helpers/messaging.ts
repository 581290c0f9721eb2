/**
 * Helpers for reliable-messaging tests: read `msg` frames whether they came alone or inside a
 * `batch`, and wait for a condition the server reaches on its own time (a dead letter, a
 * redelivery) without asserting on how long it took.
 */
import { getJson, type Frame, type TestClient } from './client.js';

/** The next `count` messages, in arrival order, unpacking `batch` frames. */
export async function nextMsgs(client: TestClient, count: number, timeoutMs = 5000): Promise<Frame[]> {
  const out: Frame[] = [];
  while (out.length < count) {
    const frame = await client.next((f) => f.op === 'msg' || f.op === 'batch', timeoutMs);
    if (frame.op === 'batch') out.push(...(frame.msgs as Frame[]));
    else out.push(frame);
  }
  return out;
}

/** The data of every message `client` has not read yet, in arrival order (batches unpacked), leaving them unread. */
export function unreadData(client: TestClient): unknown[] {
  const out: unknown[] = [];
  for (const f of client.frames) {
    if (f.op === 'msg') out.push(f.data);
    if (f.op === 'batch') for (const m of f.msgs as Frame[]) out.push(m.data);
  }
  return out;
}

/** Polls `check` until it returns a value other than undefined. */
export async function until<T>(check: () => T | undefined | Promise<T | undefined>, what: string, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** Polls a yes/no `check` until it holds (until() waits for a value). */
export async function untilTrue(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  await until(async () => ((await check()) ? true : undefined), what, timeoutMs);
}

/** A ping round trip: every frame the server sent before the pong has arrived. */
export async function settle(client: TestClient): Promise<void> {
  const t = Math.random();
  client.send({ op: 'ping', t });
  await client.next((f) => f.op === 'pong' && f.t === t);
}

/** An admin API request (see getJson), with the bearer token when given. */
export function adminJson(port: number, method: string, path: string, token?: string, headers?: Record<string, string>): Promise<{ status: number; body: Record<string, unknown> }> {
  return getJson(port, path, method, token, headers);
}
