/**
 * The calling thread's own CPU time. Node has no per-thread CPU clock (process.cpuUsage() is
 * the whole process's), but Linux keeps one per task: the first field of
 * /proc/thread-self/schedstat is the nanoseconds the thread has run. Opened once, on the thread
 * itself (thread-self is whoever opens it), and read again from offset 0 each time: one pread
 * of a few bytes per report. Elsewhere (no /proc, or a kernel without schedstat) it says -1.
 */
import { Buffer } from 'node:buffer';
import { closeSync, openSync, readSync } from 'node:fs';

const SCHEDSTAT = '/proc/thread-self/schedstat';

export class ThreadCpu {
  private fd: number;
  private readonly buffer = Buffer.alloc(96);

  constructor(path = SCHEDSTAT) {
    try {
      this.fd = openSync(path, 'r');
    } catch {
      this.fd = -1;
    }
  }

  /** Seconds this thread has spent on a CPU since it started, or -1 where Linux does not say. */
  seconds(): number {
    if (this.fd < 0) return -1;
    try {
      const length = readSync(this.fd, this.buffer, 0, this.buffer.length, 0);
      const space = this.buffer.indexOf(0x20);
      const ns = Number(this.buffer.toString('latin1', 0, space > 0 && space < length ? space : length));
      return Number.isFinite(ns) && ns >= 0 ? ns / 1e9 : -1;
    } catch {
      return -1;
    }
  }

  close(): void {
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }
}
