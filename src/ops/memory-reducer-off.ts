/**
 * Imported first by the server's entry (main.ts), for its effect: V8's memory reducer stays off
 * in every thread of the process.
 *
 * The memory reducer shrinks a heap whose allocation rate is low, about 8 s after it last had
 * reason to think there is garbage (a heap growth, a mark-compact). A server that allocates as
 * little per delivery as ours looks "low" to it while traffic flows, and its collections landed
 * in the middle of the load: scavenges of 4-18 ms in the primary and the shard about 8 s after
 * the start of a benchmark's publishing, which took the P99 of those seconds to 10-60 ms
 * against 3-5 ms in the others (npm run bench:broadcast --trace-gc, README, "Tail latency").
 * Ordinary collections still run when a heap fills; an idle server simply keeps the heap it had.
 *
 * Threads started later (the shards, the codec pool) read --no-memory-reducer when their heap
 * is set up. This thread's reducer already exists: it reads the start delay when it first arms
 * (and again after each of its rounds), so a delay past any uptime keeps it from running, as
 * long as this runs before the heap grows (main.ts loads the rest of the server after it). Once
 * armed it would wait its default 8 s and try again every 8 s until it ran.
 */
import { setFlagsFromString } from 'node:v8';

setFlagsFromString('--no-memory-reducer');
setFlagsFromString(`--gc-memory-reducer-start-delay-ms=${2 ** 31 - 1}`);
