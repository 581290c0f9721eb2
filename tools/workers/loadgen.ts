/** Thread entry of a load-generator thread; everything it does lives in tools/loadtest/. */
import { parentPort } from 'node:worker_threads';
import { serveLoadgen } from '../loadtest/loadgen-thread.js';

if (!parentPort) throw new Error('tools/workers/loadgen.js runs as a worker thread');
serveLoadgen(parentPort);
