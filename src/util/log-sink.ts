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
 *
 * Every thread writes to the same pipe, where only a write of at most PIPE_BUF (4 KB) is whole:
 * a longer line could go out in parts with another thread's line between them, breaking both.
 * So a longer line is cut to fit (fitLine): still one JSON object, its first fields whole.
 */
import { Buffer } from 'node:buffer';
import { constants, fstatSync, openSync, writeSync } from 'node:fs';
import { isatty } from 'node:tty';
import { isMainThread } from 'node:worker_threads';

/** What a thread keeps for a stalled reader: a few seconds of heavy logging, bounded. */
export const LOG_QUEUE_BYTES = 1024 * 1024;
/** PIPE_BUF on Linux: the longest write a pipe takes whole, never interleaved with another's. */
export const MAX_LINE_BYTES = 4096;
/** Fields kept first when a line is cut: what a reader filters and alerts on. */
const FIRST_FIELDS = ['level', 'time', 'pid', 'shard', 'code', 'msg'];
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
    if (line.length > MAX_LINE_BYTES / 3 && Buffer.byteLength(line) > MAX_LINE_BYTES) line = fitLine(line);
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
 * `line` (one JSON object and a newline) cut to at most `max` bytes, still one JSON object: its
 * fields in FIRST_FIELDS order, then the others, whole while they fit, then the first that does
 * not as the start of its JSON text; `truncated` says how long the line was. A line that is not
 * JSON becomes the start of its text, as `msg`.
 */
export function fitLine(line: string, max = MAX_LINE_BYTES): string {
  try {
    return fitRecord(line, max);
  } catch {
    // A value too deep to write again (the stack overflows): the line's start, as text.
    return `${JSON.stringify({ msg: cutToBytes(line, max / 2), truncated: Buffer.byteLength(line) })}\n`;
  }
}

function fitRecord(line: string, max: number): string {
  let record: Record<string, unknown>;
  try {
    const parsed: unknown = JSON.parse(line);
    record = parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : { msg: line };
  } catch {
    record = { msg: line.trimEnd() };
  }
  const keys = [...FIRST_FIELDS.filter((key) => Object.hasOwn(record, key)), ...Object.keys(record).filter((key) => !FIRST_FIELDS.includes(key))];
  const out: Record<string, unknown> = {};
  const room = max - Buffer.byteLength(`,"truncated":${Buffer.byteLength(line)}}\n`);
  let used = 1; // "{"
  for (const key of keys) {
    const value = record[key];
    const field = Buffer.byteLength(`${JSON.stringify(key)}:${JSON.stringify(value)},`);
    if (used + field <= room) {
      out[key] = value;
      used += field;
      continue;
    }
    // The first field that does not fit: the start of its text, and nothing after it.
    const text = typeof value === 'string' ? value : JSON.stringify(value) ?? '';
    const left = room - used - Buffer.byteLength(`${JSON.stringify(key)}:"",`);
    if (left > 16) out[key] = cutToBytes(text, left);
    break;
  }
  out.truncated = Buffer.byteLength(line);
  return `${JSON.stringify(out)}\n`;
}

/** The longest start of `text` whose JSON string form (quotes aside) is at most `bytes` long. */
function cutToBytes(text: string, bytes: number): string {
  let end = Math.min(text.length, bytes);
  let cut = text.slice(0, end);
  while (end > 0 && Buffer.byteLength(JSON.stringify(cut)) - 2 > bytes) {
    end = Math.floor(end * 0.9);
    cut = text.slice(0, end);
  }
  return cut;
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
