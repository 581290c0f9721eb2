/**
 * How the client turns frames into WebSocket messages and back: one interface, chosen per
 * connection by the subprotocol the server accepted. JSON lives here; MessagePack (with LZ4)
 * is its own module, loaded only by clients that ask for it, so a JSON client's bundle does
 * not carry it.
 */
import { JSON_PROTOCOL } from '../protocol/frames.js';
import { checkJsonCost, MAX_FRAME_HEAP_BYTES } from './heap-cost.js';

export { JSON_PROTOCOL, MSGPACK_PROTOCOL } from '../protocol/frames.js';

export interface ClientCodec {
  /** The `Sec-WebSocket-Protocol` this codec speaks. */
  readonly protocol: string;
  encode(frame: object): string | Uint8Array;
  /**
   * Decodes one message; throws on one that is not a frame of this encoding. `maxBytes`: the
   * most a compressed frame may inflate to (the connection's maxFrameBytes, as for one sent plain);
   * `maxHeap`: the most its values may cost (heap-cost.ts).
   */
  decode(data: unknown, maxBytes?: number, maxHeap?: number): unknown;
}

export const jsonCodec: ClientCodec = {
  protocol: JSON_PROTOCOL,
  encode: (frame) => JSON.stringify(frame),
  decode(data, _maxBytes, maxHeap = MAX_FRAME_HEAP_BYTES) {
    if (typeof data !== 'string') throw new TypeError('binary message on an ocs.v1.json connection');
    checkJsonCost(data, maxHeap);
    return JSON.parse(data);
  },
};
