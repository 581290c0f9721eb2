/**
 * The receiving half of the raw WebSocket client: server frames in, messages and control
 * frames out, with no socket in sight (the connection feeds it each read; tests feed it bytes).
 *
 * Frames are read in place where a read holds them whole, and handed out as views into the
 * caller's buffer. What a read boundary cuts is copied into parser state: a header cut short
 * is collected in `header`; a payload cut short is collected in `payload`, allocated once at
 * its full size (so a 1 MB frame over 16 reads costs one copy, not 16 concatenations);
 * fragments of a message are kept until the last one arrives. Server frames must not be
 * masked (RFC 6455 5.1); no extension is negotiated, so reserved bits are errors too.
 */
import {
  CLOSE_NO_STATUS,
  CLOSE_PROTOCOL_ERROR,
  CLOSE_TOO_BIG,
  MAX_CONTROL_PAYLOAD,
  OP_BINARY,
  OP_CLOSE,
  OP_CONTINUATION,
  OP_PING,
  OP_PONG,
  OP_TEXT,
} from './rfc6455.js';

export interface FrameSink {
  /**
   * A complete message (fragments reassembled). `owned`: the payload is the parser's own copy;
   * otherwise it is a view into the buffer given to push(), valid until this call returns.
   */
  onMessage(payload: Buffer, isBinary: boolean, owned: boolean): void;
  /** A ping; its payload is a view like an unowned message's. */
  onPing(payload: Buffer): void;
  onPong(payload: Buffer, owned: boolean): void;
  /** A close frame: its code (1005 when it carried none) and its reason. */
  onClose(code: number, reason: string): void;
  /** The peer broke the protocol; `code` is the close code to answer with. Nothing more is parsed. */
  onProtocolError(code: number, problem: string): void;
}

/** Largest frame header: 2 bytes + 8-byte length + 4-byte mask. */
const MAX_HEADER = 14;
const EMPTY = Buffer.alloc(0);

export class FrameParser {
  /** Set once a protocol error has been reported: push() ignores everything after it. */
  halted = false;

  private readonly sink: FrameSink;
  private readonly maxPayload: number;
  private readonly header = Buffer.allocUnsafe(MAX_HEADER);
  private headerHave = 0;
  private payload: Buffer | null = null;
  private payloadHave = 0;
  private frameFin = false;
  private frameOpcode = 0;
  // Fragmented message in progress: its opcode and the fragments so far.
  private fragmentOpcode = -1;
  private fragments: Buffer[] = [];
  private fragmentsLength = 0;

  /** `maxPayload`: the largest message accepted, in bytes; a larger one is an error (1009). */
  constructor(sink: FrameSink, maxPayload: number) {
    this.sink = sink;
    this.maxPayload = maxPayload;
  }

  /** Parses the frames in data[offset, end). Anything cut off by `end` waits for the next push. */
  push(data: Buffer, offset = 0, end = data.length): void {
    if (this.halted) return;
    if (this.payload !== null) {
      offset = this.continuePayload(data, offset, end);
    } else if (this.headerHave > 0) {
      offset = this.continueHeader(data, offset, end);
    }
    while (offset < end && !this.halted) {
      const available = end - offset;
      if (available < 2) {
        offset = this.continueHeader(data, offset, end);
        continue;
      }
      const b0 = data[offset]!;
      const b1 = data[offset + 1]!;
      let length = b1 & 0x7f;
      let headerSize = 2;
      if (length === 126) headerSize = 4;
      else if (length === 127) headerSize = 10;
      if (b1 & 0x80) headerSize += 4;
      if (available < headerSize) {
        offset = this.continueHeader(data, offset, end);
        continue;
      }
      if (length === 126) length = data.readUInt16BE(offset + 2);
      else if (length === 127) length = readLength64(data, offset + 2);
      if (!this.acceptHeader(b0, b1, length)) return;
      const start = offset + headerSize;
      if (end - start >= length) {
        offset = start + length;
        this.onFrame(b0 & 0x80, b0 & 0x0f, data.subarray(start, offset), false);
      } else {
        this.beginPayload(b0, length);
        offset = this.continuePayload(data, start, end);
      }
    }
  }

  /**
   * Completes a header cut by a read boundary, copying at most MAX_HEADER bytes.
   * Returns the offset of the first byte after what it consumed.
   */
  private continueHeader(data: Buffer, offset: number, end: number): number {
    const header = this.header;
    while (offset < end && this.headerHave < 2) header[this.headerHave++] = data[offset++]!;
    if (this.headerHave < 2) return offset;
    const b0 = header[0]!;
    const b1 = header[1]!;
    let length = b1 & 0x7f;
    let headerSize = length === 126 ? 4 : length === 127 ? 10 : 2;
    if (b1 & 0x80) headerSize += 4;
    while (offset < end && this.headerHave < headerSize) header[this.headerHave++] = data[offset++]!;
    if (this.headerHave < headerSize) return offset;
    this.headerHave = 0;
    if (length === 126) length = header.readUInt16BE(2);
    else if (length === 127) length = readLength64(header, 2);
    if (!this.acceptHeader(b0, b1, length)) return end;
    if (length === 0) {
      this.onFrame(b0 & 0x80, b0 & 0x0f, EMPTY, true);
      return offset;
    }
    this.beginPayload(b0, length);
    return this.continuePayload(data, offset, end);
  }

  private beginPayload(b0: number, length: number): void {
    this.payload = Buffer.allocUnsafe(length);
    this.payloadHave = 0;
    this.frameFin = (b0 & 0x80) !== 0;
    this.frameOpcode = b0 & 0x0f;
  }

  private continuePayload(data: Buffer, offset: number, end: number): number {
    const payload = this.payload!;
    const take = Math.min(payload.length - this.payloadHave, end - offset);
    data.copy(payload, this.payloadHave, offset, offset + take);
    this.payloadHave += take;
    offset += take;
    if (this.payloadHave === payload.length) {
      this.payload = null;
      this.onFrame(this.frameFin ? 0x80 : 0, this.frameOpcode, payload, true);
    }
    return offset;
  }

  /** Validates a frame header; on a violation reports it, halts and returns false. */
  private acceptHeader(b0: number, b1: number, length: number): boolean {
    const opcode = b0 & 0x0f;
    let problem: string | null = null;
    let code = CLOSE_PROTOCOL_ERROR;
    if (b0 & 0x70) problem = 'reserved bits set without a negotiated extension';
    else if (b1 & 0x80) problem = 'server frames must not be masked';
    else if (opcode >= OP_CLOSE) {
      if (opcode > OP_PONG) problem = `unknown control opcode ${opcode}`;
      else if (!(b0 & 0x80)) problem = 'fragmented control frame';
      else if (length > MAX_CONTROL_PAYLOAD) problem = 'control frame longer than 125 bytes';
    } else if (opcode > OP_BINARY) problem = `unknown data opcode ${opcode}`;
    else if (opcode === OP_CONTINUATION && this.fragmentOpcode < 0) problem = 'continuation without a message';
    else if (opcode !== OP_CONTINUATION && this.fragmentOpcode >= 0) problem = 'new message inside a fragmented one';
    else if (this.fragmentsLength + length > this.maxPayload) {
      problem = `message larger than maxPayload (${this.maxPayload} bytes)`;
      code = CLOSE_TOO_BIG;
    }
    if (problem === null) return true;
    this.fail(code, problem);
    return false;
  }

  /** One complete frame. `owned`: the payload is our own copy, not a view into the caller's buffer. */
  private onFrame(fin: number, opcode: number, payload: Buffer, owned: boolean): void {
    if (opcode === OP_TEXT || opcode === OP_BINARY) {
      if (fin) {
        this.sink.onMessage(payload, opcode === OP_BINARY, owned);
        return;
      }
      this.fragmentOpcode = opcode;
      this.fragments.push(owned ? payload : Buffer.from(payload));
      this.fragmentsLength = payload.length;
      return;
    }
    if (opcode === OP_CONTINUATION) {
      this.fragments.push(owned ? payload : Buffer.from(payload));
      this.fragmentsLength += payload.length;
      if (!fin) return;
      const message = Buffer.concat(this.fragments, this.fragmentsLength);
      const messageOpcode = this.fragmentOpcode;
      this.fragments = [];
      this.fragmentsLength = 0;
      this.fragmentOpcode = -1;
      this.sink.onMessage(message, messageOpcode === OP_BINARY, true);
      return;
    }
    if (opcode === OP_PING) {
      this.sink.onPing(payload);
      return;
    }
    if (opcode === OP_PONG) {
      this.sink.onPong(payload, owned);
      return;
    }
    // OP_CLOSE: acceptHeader let no other opcode through.
    if (payload.length === 1) {
      this.fail(CLOSE_PROTOCOL_ERROR, 'close frame with a 1-byte payload');
      return;
    }
    this.sink.onClose(payload.length >= 2 ? payload.readUInt16BE(0) : CLOSE_NO_STATUS, payload.length > 2 ? payload.toString('utf8', 2) : '');
  }

  private fail(code: number, problem: string): void {
    this.halted = true;
    this.sink.onProtocolError(code, problem);
  }
}

function readLength64(data: Buffer, at: number): number {
  const high = data.readUInt32BE(at);
  // A length beyond 2^53 cannot be a real frame; make it exceed any maxPayload.
  if (high >= 0x200000) return Number.MAX_SAFE_INTEGER;
  return high * 0x100000000 + data.readUInt32BE(at + 4);
}
