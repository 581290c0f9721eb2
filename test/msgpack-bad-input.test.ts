/**
 * Hostile binary frames on ocs.v1.msgpack connections of a real server: each is E_BAD_FRAME
 * for the connection that sent it, which stays open (and is closed with 4400 only after
 * repeated offences), while a bystander in the same group keeps getting its messages. Small
 * frames are judged on the shard, large ones in the codec pool: both paths are covered.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { Packr } from 'msgpackr';
import { deflateLz4 } from '../src/codec/lz4.js';
import { writeFrame } from '../src/protocol/msgpack-codec.js';
import { decodedBytes, plainFrame } from '../src/protocol/wire.js';
import { getJson, member } from './helpers/client.js';
import { startInProcess } from './helpers/server.js';
import type { RunningServer } from '../src/index.js';

const hex = (text: string): Buffer => Buffer.from(text.replace(/\s+/g, ''), 'hex');
const toArrayBuffer = (bytes: Buffer): ArrayBuffer => bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length) as ArrayBuffer;
const anyPackr = new Packr({ useRecords: false });
/** Over codec_offload_threshold (set to 2048 below): judged in the codec pool. */
const PADDING = 'p'.repeat(3000);

describe('bad binary frames hurt only the msgpack connection that sent them', () => {
  let server: RunningServer;
  before(async () => {
    server = await startInProcess({
      websocket: {
        server: { max_payload: 16 * 1024 },
        limits: { bad_frames_before_close: 3 },
        performance: { codec_offload_threshold: 2048 },
      },
    });
  });
  after(() => server.close());

  async function bystanderStillServed(): Promise<void> {
    const watcher = await member(server.port, 'watcher', ['g'], { encoding: 'msgpack' });
    const speaker = await member(server.port, 'speaker', ['g']);
    speaker.send({ op: 'pub', group: 'g', data: 'still fine' });
    assert.equal((await watcher.next((f) => f.op === 'msg')).data, 'still fine');
    watcher.close();
    speaker.close();
  }

  /** A compressed frame whose block is valid but whose declared length is `declared`. */
  function lyingLength(declared: number): Buffer {
    const frame = Buffer.from(writeFrame({ op: 'ping', t: 1, pad: 'x'.repeat(100) }, deflateLz4, 0));
    frame.writeUInt32LE(declared, 1);
    return frame;
  }

  const corruptBlock = (() => {
    const frame = Buffer.from(writeFrame({ op: 'pub', group: 'g', data: 'abc'.repeat(100) }, deflateLz4, 0));
    frame.writeUInt16LE(0xffff, frame.length - 9); // a match offset before the start of the output
    return frame;
  })();

  const badFrames: Array<[string, Buffer, RegExp]> = [
    ['a corrupt LZ4 block', corruptBlock, /corrupt LZ4 block|inflates to/],
    ['an LZ4 bomb: 6 bytes declaring 2 GiB', hex('01 00 00 00 80 00'), /declares 2147483648 bytes, over max_payload/],
    ['a declared length just over max_payload', lyingLength(16 * 1024 + 1), /over max_payload/],
    ['a declared length within max_payload that a 1-byte block cannot make', hex('01 00 40 00 00 00'), /declares 16384 bytes, more than its 1-byte LZ4 block can inflate to/],
    ['a declared length the block does not fill', lyingLength(200), /corrupt LZ4 block|inflates to/],
    ['reserved flag bits', hex('02 81 a2 6f 70 a4 70 69 6e 67'), /reserved flag bits/],
    ['the top flag bit with LZ4', hex('81 0a 00 00 00 00'), /reserved flag bits/],
    ['an empty binary frame', Buffer.alloc(0), /no flags byte/],
    ['truncated MessagePack', Buffer.from(writeFrame({ op: 'ping', t: 1 })).subarray(0, 8), /cut short/],
    ['MessagePack with bytes after the value', Buffer.concat([Buffer.from(writeFrame({ op: 'ping', t: 1 })), hex('c0')]), /bytes after/],
    ['a MessagePack array', Buffer.from(plainFrame(anyPackr.pack(['op', 'ping']))), /must be a MessagePack map/],
    ['a MessagePack string', Buffer.from(plainFrame(anyPackr.pack('ping'))), /must be a MessagePack map/],
    ['MessagePack nil', hex('00 c0'), /must be a MessagePack map/],
    ['an extension type (a timestamp)', Buffer.from(plainFrame(anyPackr.pack({ op: 'pub', group: 'g', data: new Date(0) }))), /extension types/],
    ['a bin value', Buffer.from(plainFrame(anyPackr.pack({ op: 'pub', group: 'g', data: new Uint8Array(4) }))), /bin has no JSON form/],
    ['an integer key', hex('00 82 a2 6f 70 a4 70 69 6e 67 01 02'), /keys must be strings/],
    ['NaN', hex('00 82 a2 6f 70 a4 70 69 6e 67 a1 74 cb 7f f8 00 00 00 00 00 00'), /NaN and infinities/],
    // {op:'ping', t:1, ref:<bytes>}: a ref the decoder would have turned into U+FFFD and echoed changed.
    ['a ref of invalid UTF-8 (a lone continuation byte)', hex('00 83 a2 6f 70 a4 70 69 6e 67 a1 74 01 a3 72 65 66 a2 78 80'), /not valid UTF-8/],
    ['a data string with a UTF-16 surrogate in UTF-8 (CESU)', hex('00 83 a2 6f 70 a3 70 75 62 a5 67 72 6f 75 70 a1 67 a4 64 61 74 61 a3 ed a0 80'), /not valid UTF-8/],
    ['a key of an overlong form', hex('00 82 a2 6f 70 a4 70 69 6e 67 a2 c0 b4 01'), /not valid UTF-8/],
    ['valid MessagePack, not an ocs.v1 frame: an unknown op', Buffer.from(writeFrame({ op: 'explode' })), /unknown op/],
    ['valid MessagePack, not an ocs.v1 frame: no op', Buffer.from(writeFrame({ group: 'g' })), /needs an op/],
    ['valid MessagePack, not an ocs.v1 frame: a group of the wrong type', Buffer.from(writeFrame({ op: 'join', group: 42 })), /group must match/],
    ['valid MessagePack, not an ocs.v1 frame: a pub without data', Buffer.from(writeFrame({ op: 'pub', group: 'g' })), /pub needs data/],
    ['valid MessagePack, not an ocs.v1 frame: a bad priority', Buffer.from(writeFrame({ op: 'pub', group: 'g', data: 1, pri: 9 })), /pri must be/],
  ];
  /** Over codec_offload_threshold: the same kinds of defect, judged in the codec pool. */
  const noise = randomBytes(3000).toString('base64');
  const largeCorrupt = (() => {
    const frame = Buffer.from(writeFrame({ op: 'pub', group: 'g', data: noise + 'abc'.repeat(300) }, deflateLz4, 0));
    frame.writeUInt16LE(0xffff, frame.length - 9);
    return frame;
  })();
  const largeFrames: Array<[string, Buffer, RegExp]> = [
    ['a corrupt LZ4 block', largeCorrupt, /corrupt LZ4 block|inflates to/],
    ['truncated MessagePack', Buffer.from(writeFrame({ op: 'pub', group: 'g', data: PADDING + PADDING })).subarray(0, 4000), /cut short/],
    ['a MessagePack array', Buffer.from(plainFrame(anyPackr.pack(['op', PADDING]))), /must be a MessagePack map/],
    ['valid MessagePack, not an ocs.v1 frame', Buffer.from(writeFrame({ op: 'explode', pad: PADDING })), /unknown op/],
    // Small on the wire, large by what it declares: it goes to the pool, and is refused there.
    ['a declared length the block does not fill', lyingLength(7000), /corrupt LZ4 block|inflates to/],
  ];
  test('the large cases below are over the offload threshold, by what they inflate to', () => {
    for (const [name, frame] of largeFrames) {
      const bytes = decodedBytes(toArrayBuffer(frame), 16 * 1024);
      assert.ok(bytes >= 2048, `${name}: ${bytes} bytes`);
    }
  });
  for (const [name, frame, message] of [...badFrames, ...largeFrames.map(([n, f, m]): [string, Buffer, RegExp] => [`${n}, ${f.length} bytes, in the codec pool,`, f, m])]) {
    test(`${name} gets E_BAD_FRAME; the connection stays open`, async () => {
      const client = await member(server.port, 'sloppy', [], { encoding: 'msgpack' });
      client.sendRaw(frame);
      const err = await client.next((f) => f.op === 'err');
      assert.equal(err.code, 'E_BAD_FRAME');
      assert.match(String(err.message), message);
      client.send({ op: 'ping', t: 1 });
      await client.next((f) => f.op === 'pong');
      client.close();
    });
  }

  test('a large frame judged in the pool keeps its ref in the refusal, and frames behind it wait their turn', async () => {
    const client = await member(server.port, 'sloppy-large', [], { encoding: 'msgpack' });
    client.send({ op: 'pub', group: 'not-joined', data: PADDING, ref: 'big' });
    client.send({ op: 'ping', t: 2 });
    const first = await client.next();
    assert.deepEqual([first.op, first.code, first.ref], ['err', 'E_NOT_MEMBER', 'big']);
    assert.equal((await client.next()).op, 'pong');
    client.close();
  });

  test('an LZ4 bomb costs no memory: a thousand of them leave the heap and RSS where they were', async () => {
    const client = await member(server.port, 'bomber', [], { encoding: 'msgpack' });
    const rss = process.memoryUsage().rss;
    for (let i = 0; i < 1000; i++) client.sendRaw(hex('01 ff ff ff 7f 00'));
    client.send({ op: 'ping', t: 3 });
    await client.next((f) => f.op === 'pong' || f.op === 'err');
    await client.closed; // 4400 after three bad frames
    assert.ok(process.memoryUsage().rss - rss < 64 * 1024 * 1024, `RSS grew by ${process.memoryUsage().rss - rss} bytes`);
    await bystanderStillServed();
  });

  test('a text frame on a msgpack connection is a bad frame', async () => {
    const client = await member(server.port, 'texter', [], { encoding: 'msgpack' });
    client.sendRaw('{"op":"ping","t":1}');
    assert.match(String((await client.next((f) => f.op === 'err')).message), /text frames need the ocs.v1.json protocol/);
    client.close();
  });

  test('repeated bad binary frames close the connection with 4400; the others are untouched', async () => {
    const client = await member(server.port, 'repeat', [], { encoding: 'msgpack' });
    for (let i = 0; i < 3; i++) client.sendRaw(hex('04 80'));
    assert.equal((await client.closed).code, 4400);
    await bystanderStillServed();
  });

  test('a compressed frame over max_payload as sent is E_TOO_LARGE and 1009, as in JSON', async () => {
    const client = await member(server.port, 'big', [], { encoding: 'msgpack' });
    client.sendRaw(Buffer.concat([hex('00'), Buffer.alloc(17 * 1024, 0x61)]));
    assert.equal((await client.next((f) => f.op === 'err')).code, 'E_TOO_LARGE');
    assert.equal((await client.closed).code, 1009);
  });

  test('/health still reports every shard up after all of the above', async () => {
    const { body } = await getJson(server.port, '/health');
    assert.equal(body.status, 'ok');
  });
});
