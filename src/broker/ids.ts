/**
 * Ids of new messages. A stored message is `INSTANCE-SEQ` (base 36): the sequence starts from
 * the clock in microseconds and only grows, so it orders a recipient's messages across
 * restarts, and the instance keeps two processes sharing the store (a pm2 reload) apart. An
 * unstored `pub` (or a message a processor dropped) is `INSTANCE.p.N`.
 */
import type { StoredMessage } from '../store/messages.js';

/** A `send`/`any` as it arrives: everything but its id, sequence and times. */
export interface Incoming {
  /** `u:USER`, `g:GROUP`, or `p:GROUP` for a `pub` (only ever dead-lettered, never queued). */
  target: string;
  from: string;
  group: string | null;
  /** The JSON text of `data`. */
  data: string;
  pri: number;
  at: number;
  strategy: string | null;
}

export class MessageIds {
  private lastSeq = 0;
  private pubSeq = 0;

  constructor(private readonly instance: string) {}

  /** A stored message's sequence (at start-up): new ones come after it. */
  saw(seq: number): void {
    if (seq > this.lastSeq) this.lastSeq = seq;
  }

  nextSeq(): number {
    return (this.lastSeq = Math.max(this.lastSeq + 1, Date.now() * 1000));
  }

  nextPubId(): string {
    return `${this.instance}.p.${(this.pubSeq++).toString(36)}`;
  }

  /** `incoming` with a fresh sequence and id (or `id`, one its sender already holds), accepted now, not yet delivered. */
  newMessage(incoming: Incoming, id?: string): StoredMessage {
    const seq = this.nextSeq();
    return {
      id: id ?? `${this.instance}-${seq.toString(36)}`,
      seq,
      target: incoming.target,
      from: incoming.from,
      group: incoming.group,
      data: incoming.data,
      pri: incoming.pri,
      ts: Date.now(),
      at: incoming.at,
      attempts: 0,
      strategy: incoming.strategy,
    };
  }
}
