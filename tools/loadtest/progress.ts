/**
 * The progress bar: one line on stderr, redrawn in place when stderr is a terminal; a plain
 * line every 10 s otherwise (CI logs), so long runs show they are alive either way.
 */
import type { ProgressUpdate } from './runner.js';

const WIDTH = 24;

export function progressLine(u: ProgressUpdate): string {
  const filled = Math.round(u.fraction * WIDTH);
  const bar = '█'.repeat(filled) + '░'.repeat(WIDTH - filled);
  const eta = Math.max(0, u.expectedS - u.elapsedS);
  return (
    `[${bar}] ${String(Math.round(u.fraction * 100)).padStart(3)}% ${u.scenario} (${u.index + 1}/${u.total}) ${u.phase}` +
    ` · ${u.connections} conns · ${u.deliveriesPerS.toFixed(0)} msg/s · P99 ${u.p99Ms.toFixed(1)} ms · errors ${u.errors} · ~${eta.toFixed(0)} s left`
  );
}

export class ProgressBar {
  private lastPlainUs = 0;
  private drawn = false;
  constructor(private readonly stream: NodeJS.WriteStream = process.stderr) {}

  update(u: ProgressUpdate): void {
    const line = progressLine(u);
    if (this.stream.isTTY) {
      const cols = this.stream.columns || 120;
      this.stream.write('\r\x1b[2K' + line.slice(0, cols - 1));
      this.drawn = true;
    } else {
      const now = Date.now();
      if (now - this.lastPlainUs >= 10_000) {
        this.lastPlainUs = now;
        this.stream.write(line + '\n');
      }
    }
  }

  /** Clears the bar before other output. */
  clear(): void {
    if (this.drawn && this.stream.isTTY) this.stream.write('\r\x1b[2K');
    this.drawn = false;
  }
}
