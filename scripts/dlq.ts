/**
 * `npm run dlq -- list|show ID|requeue ID|purge ID|purge --all [--url URL] [--token TOKEN] [--limit N] [--after ID]`
 *
 * Manages the dead-letter queue of a running server through its admin HTTP API (the broker
 * in the server owns the store and its in-memory queues, so the CLI never writes LMDB itself).
 * URL defaults to http://127.0.0.1:$WEBSOCKET_PORT (8765); TOKEN to $WEBSOCKET_ADMIN_TOKEN
 * (without a configured token the server answers loopback clients only). Prints JSON; exits
 * 1 when the server answers with an error, 2 on a usage error. `list` prints one page: pass its
 * `next` as --after for the following one. Emptying the whole queue takes `purge --all`: a
 * `purge` whose ID was forgotten must not do it.
 */
import { parseArgs } from 'node:util';
import { DEFAULT_PORT } from '../src/config/schema.js';
import { AnswerTooLarge, boundedText } from '../src/ops/bounded-text.js';

/** How long the CLI waits for the server's answer. */
const REQUEST_TIMEOUT_MS = 30_000;
/** A page of letters is bounded by the server, one letter by max_payload (64 MiB at most). */
const MAX_ANSWER_BYTES = 256 * 1024 * 1024;

const USAGE = `usage: npm run dlq -- list|show ID|requeue ID|purge ID|purge --all [--url http://127.0.0.1:${DEFAULT_PORT}] [--token TOKEN] [--limit N] [--after ID]`;

async function main(): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      allowPositionals: true,
      options: { url: { type: 'string' }, token: { type: 'string' }, limit: { type: 'string' }, after: { type: 'string' }, all: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
    });
  } catch (err) {
    console.error(`dlq: ${(err as Error).message}\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  const [command, id] = positionals;
  if (values.help || command === undefined) {
    console.log(USAGE);
    return values.help ? 0 : 2;
  }
  // `purge A B` acted on A alone, and said it had purged one: one id per command.
  const most = command === 'list' ? 1 : 2;
  if (positionals.length > most) {
    console.error(`dlq: ${command} takes ${most === 1 ? 'no id' : 'one id'}; got ${positionals.slice(1).map((p) => JSON.stringify(p)).join(' ')}\n${USAGE}`);
    return 2;
  }
  const base = (values.url ?? `http://127.0.0.1:${process.env.WEBSOCKET_PORT ?? DEFAULT_PORT}`).replace(/\/$/, '');
  const token = values.token ?? process.env.WEBSOCKET_ADMIN_TOKEN ?? '';
  // A URL makes nothing of these but a path to the collection: `purge .` would empty the queue.
  if (id === '' || id === '.' || id === '..') {
    console.error(`dlq: ${JSON.stringify(id)} is not a dead letter id\n${USAGE}`);
    return 2;
  }
  const one = id === undefined ? '' : `/${encodeURIComponent(id)}`;
  let method: string;
  let path: string;
  switch (command) {
    case 'list': {
      method = 'GET';
      const query = new URLSearchParams();
      if (values.limit) query.set('limit', values.limit);
      if (values.after) query.set('after', values.after);
      path = `/admin/dlq${query.toString() ? `?${query.toString()}` : ''}`;
      break;
    }
    case 'show':
    case 'requeue':
      if (id === undefined) {
        console.error(`dlq: ${command} needs an ID\n${USAGE}`);
        return 2;
      }
      method = command === 'show' ? 'GET' : 'POST';
      path = `/admin/dlq${one}${command === 'requeue' ? '/requeue' : ''}`;
      break;
    case 'purge':
      if ((id === undefined) === (values.all !== true)) {
        console.error(`dlq: purge needs an ID, or --all (and no ID) to empty the whole dead-letter queue\n${USAGE}`);
        return 2;
      }
      method = 'DELETE';
      path = `/admin/dlq${one}`;
      break;
    default:
      console.error(`dlq: unknown command ${command}\n${USAGE}`);
      return 2;
  }
  let res: Response;
  let text: string;
  try {
    // Bounded: a server that accepts the connection and never answers must not hang the CLI (undici waits 300 s).
    const signal = AbortSignal.timeout(REQUEST_TIMEOUT_MS);
    res = await fetch(base + path, { method, headers: token ? { authorization: `Bearer ${token}` } : {}, signal });
    text = await boundedText(res, MAX_ANSWER_BYTES);
  } catch (err) {
    if (err instanceof AnswerTooLarge) {
      console.error(`dlq: ${base}: ${err.message}`);
      return 1;
    }
    const why = (err as Error).name === 'TimeoutError' ? `no answer within ${REQUEST_TIMEOUT_MS / 1000} s` : String((err as Error).cause ?? (err as Error).message);
    console.error(`dlq: cannot reach ${base}: ${why}`);
    return 1;
  }
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: printed as is
  }
  const out = JSON.stringify(body, null, 2);
  if (res.ok) console.log(out);
  else console.error(`dlq: ${res.status}: ${out}`);
  return res.ok ? 0 : 1;
}

process.exitCode = await main();
