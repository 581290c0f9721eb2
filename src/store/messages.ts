/**
 * What the store keeps of a reliable message (store.ts holds them): the stored message, the
 * metadata the broker holds of it in memory, a dead letter, and the key that orders a queue.
 * Types and pure functions only, so that a codec pool thread can use them without lmdb.
 */
import { Buffer } from 'node:buffer';

export interface StoredMessage {
  id: string;
  seq: number;
  target: string;
  from: string;
  /** `any` messages: the group (shown in the msg frame). */
  group: string | null;
  /** The JSON text of `data`. */
  data: string;
  pri: number;
  /** Acceptance time, epoch ms. */
  ts: number;
  /** Deliver no earlier than this, epoch ms (0: at once). */
  at: number;
  /** Deliveries so far (persisted from the second one on). */
  attempts: number;
  /** `any`: the strategy the sender asked for (null: the group's). */
  strategy: string | null;
}

/** What the broker holds of a stored message: all but its data, and the data's size. */
export interface MessageMeta extends Omit<StoredMessage, 'data'> {
  /** Bytes of `data` (UTF-8), counted against store.max_bytes. */
  bytes: number;
}

/**
 * `message` without its data: what stays in memory while it waits. Spelt out field by field: a
 * rest-and-spread copy gave every one of them a hidden class of its own (a descriptor array and
 * a property array each, about 0.5 KB per message).
 */
export function metaOf(m: StoredMessage): MessageMeta {
  return { id: m.id, seq: m.seq, target: m.target, from: m.from, group: m.group, pri: m.pri, ts: m.ts, at: m.at, attempts: m.attempts, strategy: m.strategy, bytes: Buffer.byteLength(m.data) };
}

export interface DeadLetter extends StoredMessage {
  reason: string;
  failedAt: number;
}

/** The id ends the key so that two processes sharing the store (pm2 reload) never collide. */
export type QueueKey = [string, number, number, string];

export function queueKey(message: Pick<MessageMeta, 'target' | 'pri' | 'seq' | 'id'>): QueueKey {
  return [message.target, 3 - message.pri, message.seq, message.id];
}
