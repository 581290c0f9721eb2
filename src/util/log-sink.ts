/**
 * Where log lines go outside pm2: straight to fd 1 from the thread that logs (no hop through the
 * main thread, so a shard's last line before a crash is out), without ever waiting for the reader.
 *
 * A reader that stops reading (a stuck log shipper, `| tee` onto a full disk, a terminal
 * stopped with Ctrl-S) must not stop the server: on a pipe, fd 1 is made non-blocking (by the
 * main thread opening process.stdout, as libuv does for pipes; a terminal is opened anew,
 * non-blocking), a write there is no room for fails with EAGAIN at once, and the line waits in
 * a bounded queue that a timer retries. Past the bound, lines are dropped and counted; once the
 * reader catches up, one line says how many were lost. A file on a full disk (ENOSPC) is
 * treated the same way; a reader gone for good (EPIPE) drops every line.
 */
import { Buffer } from 'node:buffer';
import { constants, fstatSync, openSync, writeSync } from 'node:fs';
import { isatty } from 'node:tty';
import { isMainThread } from 'node:worker_threads';

/** What a thread keeps for a stalled reader: a few seconds of heavy logging, bounded. */
export const LOG_QUEUE_BYTES = 1024 * 1024;
const RETRY_MS = 50;
const STDOUT = 1;

/** A line, or the part of one a short write left. */
type Chunk = string | Buffer;
const sizeOf = (chunk: Chunk): number => (typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.length);
const put = (fd: number, chunk: Chunk): number => (typeof chunk === 'string' ? writeSync(fd, chunk) : writeSync(fd, chunk));
const rest = (chunk: Chunk, written: number): Buffer => (typeof chunk === 'string' ? Buffer.from(chunk) : chunk).subarray(written);

export interface LogSinkOptions {
  fd?: number;
  maxQueuedBytes?: number;
  /** Called (outside any write) with how many lines were dropped, once lines flow again. */
  onDropped?: (lines: number) => void;
}

export class LogSink {
  private readonly fd: number;
  private readonly maxQueuedBytes: number;
  onDropped: ((lines: number) => void) | undefined;
  private readonly queue: Chunk[] = [];
  private queuedBytes = 0;
  private droppedLines = 0;
  private retry: NodeJS.Timeout | null = null;

  constructor(options: LogSinkOptions = {}) {
    this.fd = options.fd ?? stdoutForWriting();
    this.maxQueuedBytes = options.maxQueuedBytes ?? LOG_QUEUE_BYTES;
    this.onDropped = options.onDropped;
  }

  /** pino's destination contract: one call per line. */
  write(line: string): boolean {
    if (this.queue.length > 0 || this.retry !== null) this.enqueue(line);
    else this.writeNow(line);
    return true;
  }

  /** One last attempt, without waiting, at what is queued (before the thread or process ends). */
  flushSync(): void {
    this.drain();
  }

  private writeNow(line: Chunk): void {
    let written: number;
    try {
      written = put(this.fd, line);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EAGAIN' || code === 'ENOSPC') this.enqueue(line);
      else this.droppedLines++;
      return;
    }
    // A line over PIPE_BUF may go out in part: the rest goes first when the pipe has room.
    if (written < sizeOf(line)) this.enqueue(rest(line, written), true);
  }

  private enqueue(line: Chunk, first = false): void {
    const bytes = sizeOf(line);
    if (!first && this.queuedBytes + bytes > this.maxQueuedBytes) {
      this.droppedLines++;
    } else {
      if (first) this.queue.unshift(line);
      else this.queue.push(line);
      this.queuedBytes += bytes;
    }
    this.arm();
  }

  private arm(): void {
    if (this.retry !== null) return;
    this.retry = setTimeout(() => this.retryNow(), RETRY_MS);
    this.retry.unref();
  }

  private retryNow(): void {
    this.retry = null;
    this.drain();
    if (this.queue.length === 0 && this.droppedLines > 0 && this.onDropped !== undefined) {
      const lines = this.droppedLines;
      this.droppedLines = 0;
      this.onDropped(lines);
    }
  }

  private drain(): void {
    while (this.queue.length > 0) {
      const line = this.queue[0]!;
      let written: number;
      try {
        written = put(this.fd, line);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'EAGAIN' || code === 'ENOSPC') break;
        // Gone for good: what waits is lost with it.
        this.droppedLines += this.queue.length;
        this.queue.length = 0;
        this.queuedBytes = 0;
        return;
      }
      this.queuedBytes -= written;
      if (written < sizeOf(line)) {
        this.queue[0] = rest(line, written);
        break;
      }
      this.queue.shift();
    }
    if (this.queue.length > 0) this.arm();
  }
}

/**
 * fd 1, or on a terminal a non-blocking descriptor of its own onto the same terminal: a terminal
 * stopped with Ctrl-S, or a detached session nobody reads, blocks a write on fd 1 (which stays
 * blocking: libuv, too, opens the terminal anew rather than change the flags of a descriptor the
 * shell shares). One per thread, open while the thread lives.
 */
function stdoutForWriting(): number {
  if (!isatty(STDOUT)) return STDOUT;
  try {
    return openSync('/proc/self/fd/1', constants.O_WRONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch {
    return STDOUT;
  }
}

/**
 * On the main thread, opens process.stdout when fd 1 is a pipe or a socket: libuv then makes the
 * descriptor non-blocking, for this process's every thread (the flag belongs to the open file).
 * A terminal or a file stays as it is.
 */
export function unblockStdout(): void {
  if (!isMainThread) return;
  try {
    const stat = fstatSync(STDOUT);
    if (stat.isFIFO() || stat.isSocket()) void process.stdout;
  } catch {
    // fd 1 closed: every write will fail and count as dropped.
  }
}
