/**
 * LZ4 for the server, through lz4-napi (native): its `compressSync` writes exactly the form
 * the protocol names (a 4-byte little-endian length, then one LZ4 block). Node.js only; a
 * browser client inflates with src/protocol/lz4-block.ts instead.
 */
import { Buffer } from 'node:buffer';
import lz4 from 'lz4-napi';
import { deflateHC } from '../protocol/lz4-encode.js';
import type { Deflate, Inflate } from '../protocol/wire.js';

const asBuffer = (bytes: Uint8Array): Buffer => (Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));

export const deflateLz4: Deflate = (body) => lz4.compressSync(asBuffer(body));

/**
 * High compression, for a frame sent to many: lz4-napi has no HC mode (it wraps lz4_flex),
 * so this is the protocol's own TypeScript encoder (src/protocol/lz4-encode.ts); its blocks
 * are ordinary LZ4, which lz4-napi and every other block decoder read.
 */
export const deflateLz4HC: Deflate = deflateHC;

/**
 * Bodies up to this size get high compression when sent to many: about 0.1 ms of CPU at 4 KB,
 * but 0.7 ms at 16 KB and several ms at 64 KB (bench:codec, frames), a stall of the shard's
 * loop, where lz4-napi's fast mode already makes text 1.7-2.4x smaller.
 */
export const HC_MAX_BYTES = 16 * 1024;

/** LZ4 for a frame sent to many: high compression up to HC_MAX_BYTES, lz4-napi's fast mode above. */
export const deflateLz4Many: Deflate = (body) => (body.byteLength <= HC_MAX_BYTES ? deflateHC(body) : deflateLz4(body));

/**
 * lz4-napi allocates whatever the prefix claims: src/protocol/wire.ts calls this only after
 * checking it against max_payload, and checks that the block filled exactly that much.
 */
export const inflateLz4: Inflate = (prefixed) => lz4.uncompressSync(prefixed);
