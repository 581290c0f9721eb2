/**
 * ocs-realtime/client: the SDK for browsers and Node.js.
 *
 *   import { OcsClient } from 'ocs-realtime/client';
 *   const client = new OcsClient({ url: 'ws://localhost:8765/ws', token: () => fetchToken() });
 *   client.on('message', (msg) => console.log(msg.from, msg.data));
 *   await client.connect();
 *   await client.join('lobby');
 *   await client.publish('lobby', { text: 'hi' });
 */
export { OcsClient } from './client.js';
export { MAX_FRAME_BYTES } from './connection.js';
export { MAX_FRAME_HEAP_BYTES } from './heap-cost.js';
export { decideReconnect, DEFAULT_RECONNECT, type ReconnectOptions, type ReconnectDecision } from './reconnect.js';
export { RecoveryBook, type Position, type Verdict, type JoinOutcome } from './recovery.js';
export { jsonCodec, JSON_PROTOCOL, MSGPACK_PROTOCOL, type ClientCodec } from './codec.js';
export type { WebSocketConstructor, WebSocketLike } from './socket.js';
export type { TokenSource } from './token.js';
export type * from './types.js';
export { OcsError, ErrorCodes, ClientErrorCodes, CloseCodes, type ErrorCode, type ClientErrorCode } from '../protocol/errors.js';
export { Priority, type PriorityValue, type AnyStrategy } from '../protocol/frames.js';
