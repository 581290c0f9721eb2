/** Thread entry of a load-generator thread; everything it does lives in src/loadtest/. */
import { parentPort } from 'node:worker_threads';
import { serveLoadgen } from '../src/loadtest/loadgen-thread.js';

if (!parentPort) throw new Error('workers/loadgen.js runs as a worker thread');
serveLoadgen(parentPort);
