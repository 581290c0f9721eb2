/** The loadgen thread's side of the runner ↔ thread contract (types.ts). */
import type { MessagePort } from 'node:worker_threads';
import { LoadGenerator } from './generator.js';
import type { MainToWorker, WorkerToMain } from './types.js';

export function serveLoadgen(port: MessagePort): void {
  let gen: LoadGenerator | null = null;
  const post = (m: WorkerToMain): void => port.postMessage(m);
  port.on('message', (m: MainToWorker) => {
    try {
      switch (m.type) {
        case 'init':
          gen = new LoadGenerator(m.plan, post);
          gen.start();
          break;
        case 'timeline':
          gen?.setTimeline(m.measureStartUs, m.measureEndUs);
          break;
        case 'ramp-stop':
          gen?.stopRamp();
          break;
        case 'abort':
          gen?.abort();
          break;
      }
    } catch (err) {
      post({ type: 'fatal', workerIndex: -1, message: (err as Error).stack ?? String(err) });
    }
  });
}
