/**
 * The part of each group's `presence` answer that every asker gets (its list of users and the
 * totals, after the asker's `ref`), built once and kept until the group changes: built anew for
 * each asker, the list of a 1,000-user group took ~50 µs, and 100 connections asking it at the
 * frame rate got 8,165 answers a second while another user's send went from 4.9 to 12.8 ms at
 * P50 (a review, 2026-12-08). GroupPresence forgets a group's entry at its every join and leave
 * (nothing else the answer shows changes), so none is ever stale, and a group that empties
 * holds none. Kept under a byte cap, the least recently asked dropped first.
 */
import { Buffer } from 'node:buffer';

export interface KeptRest {
  readonly text: string;
  /** Its UTF-8 bytes: whether the answer fits a ring record is known without encoding it again. */
  readonly bytes: number;
}

export const keptRest = (text: string): KeptRest => ({ text, bytes: Buffer.byteLength(text) });

/** Most bytes kept: the lists of 128 groups of 1,000 users with 128-character ids. */
export const PRESENCE_ANSWER_BYTES = 16 * 1024 * 1024;

/** What an entry costs beside its text (the map's entry, the record): many small groups are bounded too. */
const ENTRY_OVERHEAD = 64;

export class PresenceAnswers {
  /** By group, least recently asked first (a Map keeps the order entries were set in). */
  private readonly kept = new Map<string, KeptRest>();
  private keptBytes = 0;
  /** How many rests were built (each a list of users): what asking presence costs beyond a copy. */
  built = 0;

  constructor(private readonly maxBytes = PRESENCE_ANSWER_BYTES) {}

  /** The rest of `group`'s answer: the one kept, else `build()`'s, then kept. */
  rest(group: string, build: () => string): KeptRest {
    const hit = this.kept.get(group);
    if (hit !== undefined) {
      this.kept.delete(group);
      this.kept.set(group, hit);
      return hit;
    }
    const entry = keptRest(build());
    this.built++;
    this.kept.set(group, entry);
    this.keptBytes += entry.bytes + ENTRY_OVERHEAD;
    for (const [oldest, rest] of this.kept) {
      if (this.keptBytes <= this.maxBytes) break;
      this.drop(oldest, rest);
    }
    return entry;
  }

  /** `group` changed: its next answer is built anew. */
  forget(group: string): void {
    const rest = this.kept.get(group);
    if (rest !== undefined) this.drop(group, rest);
  }

  /** Bytes held now (texts and entries). */
  get bytes(): number {
    return this.keptBytes;
  }

  private drop(group: string, rest: KeptRest): void {
    this.kept.delete(group);
    this.keptBytes -= rest.bytes + ENTRY_OVERHEAD;
  }
}
