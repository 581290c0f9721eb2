/**
 * Answers whose shape the application relies on, checked and converted: user ids become the
 * keys of a Map (never of a plain object), and a malformed answer is refused rather than
 * handed on half-valid.
 */
import { OcsError } from '../protocol/errors.js';
import { MAX_ID_LENGTH } from '../protocol/frames.js';
import type { HistoryPage, Message, PresenceEvent, PresenceSnapshot } from './types.js';

const stringArray = (value: unknown): string[] | null => (Array.isArray(value) && value.every((v) => typeof v === 'string') ? (value as string[]) : null);

const malformed = (what: string): OcsError => new OcsError('E_INTERNAL', `malformed ${what} answer from the server`);

/**
 * A message as the server sends one: anything else (a hostile server's null or number) is never
 * handed to the application. Nor is one whose id is longer than the server takes an ack of: the
 * dedupe windows keep 10,000 ids each, and 300 ids of 1 MB (1 KB each with permessage-deflate)
 * held 301 MB there.
 */
export const isMessage = (value: unknown): value is Message => {
  const id = value !== null && typeof value === 'object' ? (value as { id?: unknown }).id : undefined;
  return typeof id === 'string' && id.length <= MAX_ID_LENGTH;
};

/** The id an `ack` of a publish, send or any carries. */
export function toMessageId(frame: unknown): string {
  const id = (frame as { id?: unknown }).id;
  if (typeof id !== 'string') throw malformed('ack');
  return id;
}

export function toPresenceSnapshot(frame: unknown): PresenceSnapshot {
  const f = frame as Record<string, unknown>;
  const total = f.total as Record<string, unknown> | undefined;
  if (typeof f.group !== 'string' || total === null || typeof total !== 'object' || typeof total.users !== 'number' || typeof total.conns !== 'number') throw malformed('presence');
  const snapshot: PresenceSnapshot = { group: f.group, total: { users: total.users, conns: total.conns } };
  if (f.users !== undefined) {
    if (f.users === null || typeof f.users !== 'object' || Array.isArray(f.users)) throw malformed('presence');
    snapshot.users = new Map(Object.entries(f.users as Record<string, unknown>).filter((e): e is [string, number] => typeof e[1] === 'number'));
  }
  return snapshot;
}

export function toPresenceEvent(frame: Record<string, unknown>): PresenceEvent | null {
  const joins = frame.joins === undefined ? [] : stringArray(frame.joins);
  const leaves = frame.leaves === undefined ? [] : stringArray(frame.leaves);
  if (typeof frame.group !== 'string' || joins === null || leaves === null) return null;
  return { group: frame.group, joins, leaves };
}

export function toHistoryPage(frame: unknown): HistoryPage {
  const f = frame as Record<string, unknown>;
  if (typeof f.group !== 'string' || !Array.isArray(f.msgs) || typeof f.offset !== 'number' || typeof f.epoch !== 'string') throw malformed('history');
  return { group: f.group, msgs: f.msgs.filter(isMessage), offset: f.offset, epoch: f.epoch, more: f.more === true };
}
