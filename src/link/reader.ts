/**
 * The reading end of a shard <-> broker ring: hands each `[kind u8][MessagePack fields]`
 * record, decoded, to a handler. The writing end is ./queued-writer.ts; the records, ./records.ts.
 */
import { RingReader } from '../rings/ring.js';
import { decodeFields } from './records.js';

export type RecordHandler = (kind: number, fields: unknown[]) => void;

export class LinkReader {
  private readonly reader: RingReader;

  constructor(buffer: SharedArrayBuffer, private readonly handle: RecordHandler, discardStale: boolean) {
    this.reader = new RingReader(buffer);
    if (discardStale) this.reader.discardAll();
  }

  /** Handles up to `budget` records; returns how many it handled. */
  drain(budget: number, mark = -1): number {
    const reader = this.reader;
    let handled = 0;
    while (handled < budget && (mark === -1 || !reader.readPast(mark)) && reader.next()) {
      handled++;
      const at = reader.offset;
      this.handle(reader.bytes[at]!, decodeFields(reader.bytes, at, reader.length));
    }
    reader.release();
    return handled;
  }

  /** Handles every record written before this call, none written meanwhile (at most a ring's worth); returns how many. */
  catchUp(): number {
    return this.drain(Number.MAX_SAFE_INTEGER, this.reader.written());
  }
}
