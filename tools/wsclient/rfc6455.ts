/** The numbers of RFC 6455 that the client's parser, encoder and connection share. */

export const OP_CONTINUATION = 0x0;
export const OP_TEXT = 0x1;
export const OP_BINARY = 0x2;
export const OP_CLOSE = 0x8;
export const OP_PING = 0x9;
export const OP_PONG = 0xa;

export const CLOSE_NORMAL = 1000;
export const CLOSE_PROTOCOL_ERROR = 1002;
/** Reported (never sent) when a close frame carried no code. */
export const CLOSE_NO_STATUS = 1005;
/** Reported (never sent) when TCP ended without a close frame. */
export const CLOSE_ABNORMAL = 1006;
export const CLOSE_TOO_BIG = 1009;

/** Control frames (close, ping, pong) carry at most this many payload bytes. */
export const MAX_CONTROL_PAYLOAD = 125;
