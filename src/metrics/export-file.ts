/**
 * monitoring.export_file: the primary appends the overview row (src/metrics/overview.ts) as a
 * JSON line once per interval. Everything is asynchronous (the primary also runs the broker):
 * append() queues the line and returns; one write is in flight at a time. When the next line
 * would take the file past export_max_bytes it is rotated first (FILE -> FILE.1 -> ... ->
 * FILE.<export_keep>, the oldest removed). A failing disk is never fatal: lines are dropped
 * whole while it fails (a line written in part is cut off again), and each change between
 * working and failing is logged once.
 */
import { Buffer } from 'node:buffer';
import type { FileHandle } from 'node:fs/promises';
import { open, rename, rm } from 'node:fs/promises';
import type { Logger } from '../util/logger.js';

export interface ExportSettings {
  file: string;
  maxBytes: number;
  keep: number;
}

/** Lines queued behind a slow disk; past this, new ones are dropped (and counted). */
const MAX_QUEUED = 64;

export class ExportFile {
  private handle: FileHandle | null = null;
  private size = 0;
  private readonly queue: string[] = [];
  private draining: Promise<void> | null = null;
  private failing = false;
  private dropped = 0;
  private closed = false;

  constructor(
    private readonly settings: ExportSettings,
    private readonly log: Logger,
  ) {}

  append(line: string): void {
    if (this.closed) return;
    if (this.queue.length >= MAX_QUEUED) {
      this.dropped++;
      return;
    }
    this.queue.push(`${line}\n`);
    this.draining ??= this.drain().finally(() => (this.draining = null));
  }

  /** Writes what is queued, then closes the file. */
  async close(): Promise<void> {
    this.closed = true;
    await this.draining;
    await this.release();
  }

  private async drain(): Promise<void> {
    while (this.queue.length > 0) {
      const line = this.queue.shift()!;
      try {
        await this.write(line);
        if (this.failing) {
          this.failing = false;
          this.log.info({ file: this.settings.file, dropped: this.dropped }, 'metrics export file written again');
          this.dropped = 0;
        }
      } catch (err) {
        this.dropped++;
        if (!this.failing) {
          this.failing = true;
          this.log.error({ code: 'E_INTERNAL', file: this.settings.file, err }, 'metrics export file cannot be written; snapshots are dropped until it can');
        }
        // Opened again for the next line: the directory may come back, or the disk get space.
        await this.release();
      }
    }
  }

  private async write(line: string): Promise<void> {
    const bytes = Buffer.byteLength(line);
    if (this.handle === null) await this.openFile();
    if (this.size > 0 && this.size + bytes > this.settings.maxBytes) {
      await this.rotate();
      await this.openFile();
    }
    const { bytesWritten } = await this.handle!.write(line);
    if (bytesWritten < bytes) {
      // Taken back (shrinking needs no space): the next line must not be glued to half of this one.
      await this.handle!.truncate(this.size);
      throw new Error(`short write: ${bytesWritten} of ${bytes} bytes`);
    }
    this.size += bytesWritten;
  }

  private async openFile(): Promise<void> {
    const handle = await open(this.settings.file, 'a');
    try {
      this.size = (await handle.stat()).size;
    } catch (err) {
      await handle.close().catch(() => undefined);
      throw err;
    }
    this.handle = handle;
  }

  private async rotate(): Promise<void> {
    await this.release();
    const { file, keep } = this.settings;
    if (keep === 0) return rm(file, { force: true });
    await rm(`${file}.${keep}`, { force: true });
    for (let n = keep - 1; n >= 1; n--) await rename(`${file}.${n}`, `${file}.${n + 1}`).catch(ignoreMissing);
    await rename(file, `${file}.1`);
  }

  private async release(): Promise<void> {
    const handle = this.handle;
    this.handle = null;
    await handle?.close().catch(() => undefined);
  }
}

function ignoreMissing(err: NodeJS.ErrnoException): void {
  if (err.code !== 'ENOENT') throw err;
}
