/**
 * src/util/http-answer.ts: which connection gives way when the answers waiting for their sockets
 * reach MAX_WAITING_BYTES. uWS's HttpResponse is replaced by a socket whose reader the test
 * plays: it takes only the bytes the test lets it, and its wall clock is mocked.
 *
 * On loopback the kernel takes megabytes at once, so no honest request of a real socket here
 * waits; over a network its send buffer starts at tens of KB, and an answer larger than that
 * (a DLQ page, /metrics of many shards) waits for its reader like the ones below.
 */
import assert from 'node:assert/strict';
import { afterEach, describe, test } from 'node:test';
import { answer, MAX_WAITING_BYTES, STALLED_MS, waitingAnswers } from '../src/util/http-answer.js';
import type { HttpResponse } from '../src/util/uws.js';

const BODY = new Uint8Array(MAX_WAITING_BYTES / 8);

/** A connection whose reader takes `takes` more bytes when the test says so. */
class Reader {
  closed = false;
  ended = false;
  private offset = 0;
  private takes = 0;
  private aborted?: () => void;
  private writable?: (offset: number) => boolean;

  get res(): HttpResponse {
    return this as unknown as HttpResponse;
  }

  /** The reader takes `bytes` more: the socket is writable again. */
  read(bytes: number): void {
    this.takes += bytes;
    this.writable?.(this.offset);
  }

  onAborted(handler: () => void): this {
    this.aborted = handler;
    return this;
  }
  onWritable(handler: (offset: number) => boolean): this {
    this.writable = handler;
    return this;
  }
  cork(fn: () => void): this {
    fn();
    return this;
  }
  writeStatus(): this {
    return this;
  }
  writeHeader(): this {
    return this;
  }
  getWriteOffset(): number {
    return this.offset;
  }
  tryEnd(chunk: Uint8Array, total: number): [boolean, boolean] {
    const sent = Math.min(this.takes, chunk.byteLength);
    this.takes -= sent;
    this.offset += sent;
    this.ended = this.offset >= total;
    return [sent === chunk.byteLength, this.ended];
  }
  close(): this {
    if (this.closed) return this;
    this.closed = true;
    this.aborted?.();
    return this;
  }
}

const readers: Reader[] = [];
function request(): Reader {
  const reader = new Reader();
  readers.push(reader);
  answer(reader.res, '200 OK', [], BODY);
  return reader;
}

describe('answers waiting for their sockets past MAX_WAITING_BYTES', () => {
  afterEach(() => {
    for (const reader of readers.splice(0)) reader.close();
    assert.deepEqual(waitingAnswers(), { count: 0, bytes: 0 }, 'every closed answer gave its bytes back');
  });

  test('a reader that reads is served while connections that never read hold the bound: the longest stalled of them is closed for it', (t) => {
    t.mock.timers.enable({ apis: ['Date'], now: 0 });
    const greedy = Array.from({ length: 8 }, request);
    assert.equal(waitingAnswers().bytes, MAX_WAITING_BYTES);
    const fresh = request();
    assert.ok(fresh.closed, 'nothing had stalled yet: the new answer is the one refused, and the bound holds');
    t.mock.timers.tick(STALLED_MS);
    const honest = request();
    assert.ok(!honest.closed, 'the new answer waits for its reader');
    assert.deepEqual(
      greedy.map((r) => r.closed),
      [true, false, false, false, false, false, false, false],
      'the connection stalled longest made room for it',
    );
    assert.ok(waitingAnswers().bytes <= MAX_WAITING_BYTES);
    for (let i = 0; i < 4; i++) honest.read(BODY.byteLength / 4);
    assert.ok(honest.ended, 'written whole as its reader read');
  });

  test('an answer whose reader keeps taking bytes is not stalled: past the bound the new answer is refused instead', (t) => {
    t.mock.timers.enable({ apis: ['Date'], now: 0 });
    const slow = Array.from({ length: 8 }, request);
    for (let second = 0; second < 3; second++) {
      t.mock.timers.tick(STALLED_MS / 2);
      for (const reader of slow) reader.read(1024);
    }
    const late = request();
    assert.ok(late.closed);
    assert.ok(slow.every((r) => !r.closed && !r.ended), 'slow readers that read are left to finish');
  });
});
