/**
 * The client's LZ4 encoder for its frames of at least 1 KiB: the protocol's plain-TypeScript
 * fast encoder (src/protocol/lz4-encode.ts), shared with the server. A dependency would not do:
 * the npm LZ4 ports implement the frame format or assume Node's Buffer.
 * test/client-codec.test.ts checks it against lz4-napi and src/protocol/lz4-block.ts.
 */
export { compressBlock, deflateJs } from '../protocol/lz4-encode.js';
