/**
 * The /admin/dlq HTTP API: the shards check who may call it and forward method and path here
 * (the primary thread, which owns the store); this turns them into calls on the store and the
 * broker's requeue, and into a status and a JSON body.
 *
 *   GET /admin/dlq?limit&after   list          GET    /admin/dlq/ID   show
 *   DELETE /admin/dlq            purge all     DELETE /admin/dlq/ID   purge one
 *   POST /admin/dlq/ID/requeue   back into its recipient's queue
 */
import { OcsError } from '../protocol/errors.js';
import type { DeadLetter, MessageStore } from '../store/store.js';

export type DeadLetterStore = Pick<MessageStore, 'countDead' | 'listDead' | 'getDead' | 'removeDead' | 'purgeDead'>;

export interface AdminAnswer {
  status: number;
  body: unknown;
}

const DEFAULT_LIST_LIMIT = 100;

/** Answers one request; `requeue` puts a dead letter back in its recipient's queue and resolves with the new id. */
export async function answerDlqRequest(method: string, path: string, store: DeadLetterStore, requeue: (letter: DeadLetter) => Promise<string>): Promise<AdminAnswer> {
  const url = new URL(path, 'http://x');
  const parts = url.pathname.split('/').filter(Boolean); // ['admin', 'dlq', id?, action?]
  if (parts[0] !== 'admin' || parts[1] !== 'dlq' || parts.length > 4) return notFound();
  const id = parts[2] === undefined ? undefined : decodeURIComponent(parts[2]);
  try {
    if (method === 'get' && id === undefined) {
      const limit = Math.min(1000, Math.max(1, Number(url.searchParams.get('limit') ?? DEFAULT_LIST_LIMIT) || DEFAULT_LIST_LIMIT));
      const after = url.searchParams.get('after') ?? undefined;
      return { status: 200, body: { count: store.countDead(), items: store.listDead(limit, after).map(showDead) } };
    }
    if (id === undefined) {
      if (method === 'delete') {
        const purged = await store.purgeDead();
        return purged < 0 ? unwritable() : { status: 200, body: { purged } };
      }
      return notFound();
    }
    const letter = store.getDead(id);
    if (!letter) return { status: 404, body: { code: 'not_found', message: `no dead letter ${id}` } };
    if (method === 'get' && parts.length === 3) return { status: 200, body: showDead(letter) };
    if (method === 'delete' && parts.length === 3) {
      return (await store.removeDead(id)) ? { status: 200, body: { purged: 1 } } : unwritable();
    }
    if (method === 'post' && parts[3] === 'requeue') return { status: 200, body: { requeued: await requeue(letter) } };
    return notFound();
  } catch (err) {
    // A requeue refused by a limit (409) or an unwritable store (503) says which, with its code.
    if (err instanceof OcsError) return { status: err.code === 'E_STORE_UNAVAILABLE' ? 503 : 409, body: { code: err.code, message: err.message } };
    return { status: 500, body: { code: 'E_INTERNAL', message: (err as Error).message } };
  }
}

function showDead(letter: DeadLetter): Record<string, unknown> {
  let data: unknown = letter.data;
  try {
    data = JSON.parse(letter.data);
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

function unwritable(): AdminAnswer {
  return { status: 503, body: { code: 'E_STORE_UNAVAILABLE', message: 'the store cannot write (disk full, I/O error); try again once it recovers' } };
}

function notFound(): AdminAnswer {
  return { status: 404, body: { code: 'not_found', message: 'see GET /admin/dlq, GET|DELETE /admin/dlq/ID, POST /admin/dlq/ID/requeue, DELETE /admin/dlq' } };
}
