/**
 * The client's acks of stored messages, gathered: those asked for while one frame from the
 * server is handled (a `batch` of a backlog: up to batch_size messages) go out together once
 * it is done, a microtask later, in `ack` frames of up to the server's `ackIds` ids each,
 * rather than one frame per message: the server's frame rate (100 a second by default) made
 * draining a backlog of thousands a matter of minutes, and a burst of acks a 4029.
 */
export class AckBatcher {
  /** Ids per frame the server takes (its welcome's `limits.ackIds`); 1: one `id` per frame, what every server takes. */
  perFrame = 1;
  private ids: string[] = [];
  private scheduled = false;

  constructor(private readonly send: (frame: Record<string, unknown>) => void) {}

  add(id: string): void {
    this.ids.push(id);
    if (this.scheduled) return;
    this.scheduled = true;
    queueMicrotask(() => this.flush());
  }

  /** The connection is gone: the acks not sent are moot (their messages come again, and are acked then). */
  clear(): void {
    this.ids = [];
  }

  /** Sends what was gathered (now, when the client closes). */
  flush(): void {
    this.scheduled = false;
    const ids = this.ids;
    this.ids = [];
    for (let from = 0; from < ids.length; from += this.perFrame) {
      const chunk = ids.slice(from, from + this.perFrame);
      this.send(chunk.length === 1 ? { op: 'ack', id: chunk[0] } : { op: 'ack', ids: chunk });
    }
  }
}
