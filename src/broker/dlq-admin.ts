/**
 * The /admin/dlq HTTP API: the shards check who may call it and forward method and path here
 * (the primary thread, which owns the store); this turns them into calls on the store and the
 * broker's requeue, and into a status and a JSON body. The store is the LMDB one, or in cluster
 * mode the dead letters in Redis (src/cluster/dead-letters.ts), read asynchronously.
 *
 *   GET /admin/dlq?limit&after   list, a page  GET    /admin/dlq/ID   show
 *   DELETE /admin/dlq            purge all     DELETE /admin/dlq/ID   purge one
 *   POST /admin/dlq/ID/requeue   back into its recipient's queue
 */
import { Buffer } from 'node:buffer';
import { httpError, OcsError } from '../protocol/errors.js';
import { MAX_ID_LENGTH } from '../protocol/frames.js';
import type { DeadLetter } from '../store/messages.js';
import type { MessageStore } from '../store/store.js';
import { renderDeadLetters, showDead } from './dead-letter-view.js';

type Sync<T> = T | Promise<T>;

/** What the API reads and removes: MessageStore's methods, which a Redis store has asynchronously. */
export interface DeadLetterStore {
  countDead(): Sync<number>;
  listDead(limit: number, after?: string): Sync<DeadLetter[]>;
  getDead(id: string): Sync<DeadLetter | undefined>;
  /** false: the store cannot write (503). */
  removeDead: MessageStore['removeDead'];
  /** -1: the store cannot write (503). */
  purgeDead: MessageStore['purgeDead'];
}

export interface AdminAnswer {
  status: number;
  body: unknown;
  /** The body already as JSON text (a list page, assembled from its rendered items). */
  json?: string;
}

/**
 * Renders a chunk of letters as their items' JSON text: inline by default; the server passes
 * one that sends large chunks to the primary's codec pool (src/codec), so that a page of
 * megabytes does not hold up the broker's loop.
 */
export type RenderLetters = (letters: readonly DeadLetter[]) => string[] | Promise<string[]>;

const DEFAULT_LIST_LIMIT = 100;
/** Letters read from the store at a time while a page fills up. */
const LIST_CHUNK = 50;
/** A list body's bytes besides its items and their commas: `{"count":N,"items":[...],"next":"ID"}`. */
const LIST_ENVELOPE_BYTES = 256;
const USAGE = 'see GET /admin/dlq, GET|DELETE /admin/dlq/ID, POST /admin/dlq/ID/requeue, DELETE /admin/dlq';

/**
 * Answers one request; `requeue` puts a dead letter back in its recipient's queue and resolves
 * with the new id. A list is a page of at most `maxBodyBytes` (the answer travels to the shard
 * as one ring record). Never rejects: the path is client data, and whatever fails on it (a bad
 * percent-encoding, the store) is a coded answer.
 */
export async function answerDlqRequest(
  method: string,
  path: string,
  store: DeadLetterStore,
  requeue: (letter: DeadLetter) => Promise<string>,
  maxBodyBytes = Infinity,
  render: RenderLetters = renderDeadLetters,
): Promise<AdminAnswer> {
  try {
    return await answer(method, path, store, requeue, maxBodyBytes, render);
  } catch (err) {
    if (err instanceof BadRequest) return httpError('bad_request', err.message);
    // A requeue refused by a limit (409) or an unwritable store or unreachable Redis (503) says
    // which, with its messaging code; a letter another node took meanwhile is not found (404).
    if (err instanceof OcsError) return httpError(UNAVAILABLE.has(err.code) ? 'unavailable' : err.code === 'E_UNKNOWN_ID' ? 'not_found' : 'conflict', `${err.code}: ${err.message}`);
    return httpError('internal_error', (err as Error).message);
  }
}

/**
 * answerDlqRequest() with the body serialised and handed to `reply`, once. Should anything
 * still reject on the way, the answer is a coded 500, and a `reply` that throws goes to `failed`:
 * no rejection of the admin path is left unhandled.
 */
export function serveDlqRequest(
  method: string,
  path: string,
  store: DeadLetterStore,
  requeue: (letter: DeadLetter) => Promise<string>,
  reply: (status: number, bodyJson: string) => void,
  failed: (err: unknown) => void,
  maxBodyBytes = Infinity,
  render: RenderLetters = renderDeadLetters,
): void {
  answerDlqRequest(method, path, store, requeue, maxBodyBytes, render)
    .then(({ status, body, json }) => ({ status, json: json ?? JSON.stringify(body) }))
    .catch((err: Error) => ({ status: 500, json: JSON.stringify(httpError('internal_error', err.message).body) }))
    .then(({ status, json }) => reply(status, json))
    .catch(failed);
}

class BadRequest extends Error {}

/** `?limit=`: a whole number from 1 (more than 1000 reads as 1000); absent, the default. */
function listLimit(text: string | null): number {
  if (text === null) return DEFAULT_LIST_LIMIT;
  if (!/^[0-9]+$/.test(text) || Number(text) < 1) throw new BadRequest(`limit must be a whole number from 1 to 1000, not ${JSON.stringify(text.slice(0, 32))}`);
  return Math.min(1000, Number(text));
}

const UNAVAILABLE: ReadonlySet<string> = new Set(['E_STORE_UNAVAILABLE', 'E_CLUSTER_UNAVAILABLE']);

async function answer(method: string, path: string, store: DeadLetterStore, requeue: (letter: DeadLetter) => Promise<string>, maxBodyBytes: number, render: RenderLetters): Promise<AdminAnswer> {
  const url = new URL(path, 'http://x');
  // ['admin', 'dlq', id?, action?]. Empty parts are kept: `/admin/dlq/` (an empty id, or `.`
  // resolved away by a URL parser) once read as `/admin/dlq`, and a DELETE of it purged them all.
  const parts = url.pathname.split('/').slice(1);
  if (parts[0] !== 'admin' || parts[1] !== 'dlq' || parts.length > 4) return httpError('not_found', USAGE);
  if (parts[2] === '') throw new BadRequest('the dead letter id is empty (a path ending in /, or an id of . or ..)');
  const id = parts[2] === undefined ? undefined : decode(parts[2]);
  if (method === 'get' && id === undefined) {
    const limit = listLimit(url.searchParams.get('limit'));
    return { status: 200, body: null, json: await listPage(store, limit, url.searchParams.get('after') ?? undefined, maxBodyBytes, render) };
  }
  if (id === undefined) {
    if (method === 'delete') {
      const purged = await store.purgeDead();
      return purged < 0 ? unwritable() : { status: 200, body: { purged } };
    }
    return httpError('not_found', USAGE);
  }
  // Longer than any id the server issues, and than a store key may be (the store throws on those).
  if (id.length > MAX_ID_LENGTH) return httpError('not_found', `no dead letter has an id of ${id.length} characters (at most ${MAX_ID_LENGTH})`);
  const letter = await store.getDead(id);
  if (!letter) return httpError('not_found', `no dead letter ${id}`);
  if (method === 'get' && parts.length === 3) return { status: 200, body: showDead(letter) };
  if (method === 'delete' && parts.length === 3) {
    return (await store.removeDead(id)) ? { status: 200, body: { purged: 1 } } : unwritable();
  }
  if (method === 'post' && parts[3] === 'requeue') {
    if (letter.target.startsWith('p:')) return httpError('conflict', 'a dead-lettered pub cannot be requeued: pubs are not stored');
    return { status: 200, body: { requeued: await requeue(letter) } };
  }
  return httpError('not_found', USAGE);
}

function decode(part: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    throw new BadRequest('the dead letter id is not valid percent-encoded UTF-8');
  }
}

/**
 * Up to `limit` letters after `after`, as many as fit `maxBytes` of JSON (64 KB letters once
 * made a 64 MB answer), as the page's JSON text `{"count","items","next"}`. `next`: the `after`
 * of the following page, null when none follows.
 */
async function listPage(store: DeadLetterStore, limit: number, after: string | undefined, maxBytes: number, render: RenderLetters): Promise<string> {
  const items: string[] = [];
  let bytes = LIST_ENVELOPE_BYTES;
  let cursor = after;
  const page = async (next: string | null): Promise<string> => `{"count":${await store.countDead()},"items":[${items.join(',')}],"next":${JSON.stringify(next)}}`;
  for (;;) {
    const letters = await store.listDead(Math.min(LIST_CHUNK, limit - items.length), cursor);
    if (letters.length === 0) return page(null);
    const rendered = await render(letters);
    for (let i = 0; i < letters.length; i++) {
      const item = rendered[i]!;
      const size = Buffer.byteLength(item) + 1;
      // A first item over the page still goes: the link then answers 500 rather than page forever.
      if (items.length > 0 && bytes + size > maxBytes) return page(cursor ?? null);
      items.push(item);
      bytes += size;
      cursor = letters[i]!.id;
    }
    if (items.length >= limit) return page((await store.listDead(1, cursor)).length > 0 ? cursor! : null);
  }
}

function unwritable(): AdminAnswer {
  return httpError('unavailable', 'E_STORE_UNAVAILABLE: the store cannot write (disk full, I/O error); try again once it recovers');
}
