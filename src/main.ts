/**
 * The server's entry: `npm start [-- --config FILE]`, `node dist/src/main.js`, pm2 (serve.ts).
 * V8's flags are set first (ops/memory-reducer-off.ts), before the rest of the server is even
 * loaded: a static import graph is loaded in full before any of it runs, and loading it grows
 * the heap, which can arm the memory reducer with its default delay.
 */
import './ops/memory-reducer-off.js';

await import('./serve.js');
