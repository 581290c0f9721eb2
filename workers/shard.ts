/** Thread entry of one acceptor shard; everything it does lives in src/shard. */
import { parentPort, workerData } from 'node:worker_threads';
import { runShard } from '../src/shard/shard.js';
import type { PrimaryToShard, ShardInit } from '../src/shared/thread-messages.js';

const port = parentPort!;
runShard(workerData as ShardInit, {
  post: (message) => port.postMessage(message),
  onMessage: (handler) => port.on('message', (message: PrimaryToShard) => handler(message)),
  close: () => port.close(),
});
