/**
 * The one table of ocs.v1 error codes (PROTOCOL.md, "Errors and close codes").
 * Server, SDK, load tester and docs all read it from here; a test checks that every code
 * is documented in PROTOCOL.md and the README.
 */
export const ErrorCodes = {
  E_BAD_FRAME: { close: 4400, message: 'frame is not a valid ocs.v1 object' },
  E_TOO_LARGE: { close: 1009, message: 'frame is larger than max_payload' },
  E_UNAUTHORIZED: { close: 4001, message: 'missing, bad or expired token' },
  E_FORBIDDEN: { close: 0, message: 'group not allowed for this user' },
  E_RATE_LIMITED: { close: 4029, message: 'over the per-connection message rate' },
  E_NOT_MEMBER: { close: 0, message: 'join the group before publishing to it' },
  E_OVERLOADED: { close: 1013, message: 'server over its limits' },
  /** `ack` of an id that awaits no acknowledgement from this user: unknown, already acknowledged, or someone else's. */
  E_UNKNOWN_ID: { close: 0, message: 'no message with this id awaits your acknowledgement' },
  /**
   * `send`/`any` refused by a limit on stored messages, named in the message: the recipient's
   * queue is full of non-LOW messages (delivery.max_pending_per_user), the sender has too many
   * stored (delivery.max_stored_per_sender), or the whole store is full (store.max_messages,
   * store.max_bytes). One code: a client does the same for each (retry later, slower).
   */
  E_QUEUE_FULL: { close: 0, message: 'too many stored messages' },
  /** The store cannot write (disk full, I/O error): send/any refused until it recovers; pub is not affected. */
  E_STORE_UNAVAILABLE: { close: 0, message: 'the message store cannot write' },
  /**
   * Cluster mode, Redis unreachable: what needs it is refused (send, any, ack) or done on this
   * node only (a pub reaches this node's members, then its publisher gets this instead of an ack).
   */
  E_CLUSTER_UNAVAILABLE: { close: 0, message: 'the cluster (Redis) is unreachable: only this node is served' },
  E_INTERNAL: { close: 0, message: 'internal server error' },
  // Process-level codes (start-up), never sent on the wire.
  E_CONFIG: { close: 0, message: 'invalid configuration' },
  E_STARTUP: { close: 0, message: 'server could not start' },
} as const;

export type ErrorCode = keyof typeof ErrorCodes;

/**
 * Codes the client SDK (src/client) gives a request the server never answered. They never
 * travel on the wire: the server's answers carry the codes above, which the SDK passes on as
 * they came.
 */
export const ClientErrorCodes = {
  /** The connection closed before the answer came: the request may or may not have taken effect. */
  E_DISCONNECTED: { message: 'the connection closed before the server answered; the outcome is unknown' },
  /** No answer within the request timeout. */
  E_TIMEOUT: { message: 'the server did not answer in time' },
  /** The client was closed (by the application, or for good after a close code that forbids retrying). */
  E_CLOSED: { message: 'the client is closed' },
  /** More requests wait for a connection than the client keeps (its `maxQueued` option). */
  E_BACKLOG_FULL: { message: 'too many requests wait for a connection' },
} as const;

export type ClientErrorCode = keyof typeof ClientErrorCodes;

/**
 * Finer reasons an `err` frame may carry beside its code, in a `reason` field, for clients
 * that act on them rather than on the message text (which is for people and may change).
 */
export const ErrorReasons = {
  /** With E_BAD_FRAME: the `op` is not one this server implements (a client may fall back). */
  unknown_op: 'the op is not one this server implements',
} as const;

export type ErrorReason = keyof typeof ErrorReasons;

/**
 * The `code` of the JSON body of HTTP answers outside the WebSocket upgrade (`/health`,
 * `/stats`, `/metrics`, `/alerts`, `/dashboard`, `/admin/*`), with their status. PROTOCOL.md lists them; a test checks it does.
 */
export const HttpCodes = {
  bad_request: { status: 400, message: 'malformed request (a bad percent-encoding, say)' },
  unauthorized: { status: 401, message: 'missing or wrong token' },
  forbidden: { status: 403, message: 'not allowed from here' },
  not_found: { status: 404, message: 'no such resource' },
  conflict: { status: 409, message: 'not possible in the current state' },
  rate_limited: { status: 429, message: 'too many requests from this address; retry after Retry-After seconds' },
  internal_error: { status: 500, message: 'the server failed on this request' },
  unavailable: { status: 503, message: 'the server cannot take this request now; retry shortly' },
  timeout: { status: 504, message: 'the message broker did not answer in time' },
} as const;

export type HttpCode = keyof typeof HttpCodes;

const STATUS_TEXT = new Map<number, string>([
  [200, 'OK'],
  [400, 'Bad Request'],
  [401, 'Unauthorized'],
  [403, 'Forbidden'],
  [404, 'Not Found'],
  [409, 'Conflict'],
  [500, 'Internal Server Error'],
  [429, 'Too Many Requests'],
  [503, 'Service Unavailable'],
  [504, 'Gateway Timeout'],
]);

/** The status line for `status`, as uWS writeStatus() takes it. */
export function httpStatusLine(status: number): string {
  return `${status} ${STATUS_TEXT.get(status) ?? 'Error'}`;
}

/** An HTTP error answer: the code's status and a `{code, message}` body. */
export function httpError(code: HttpCode, message: string = HttpCodes[code].message): { status: number; body: { code: HttpCode; message: string } } {
  return { status: HttpCodes[code].status, body: { code, message } };
}

/** Close codes that are not tied to one error code. */
export const CloseCodes = {
  NORMAL: 1000,
  GOING_AWAY: 1001,
  /** The server failed the connection itself (a token check that broke): an `err E_INTERNAL` precedes it. */
  INTERNAL_ERROR: 1011,
  SERVICE_RESTART: 1012,
  /** No inbound traffic (frames or pongs) for idle_timeout: an ocs.v1 addition (PROTOCOL.md). */
  IDLE_TIMEOUT: 4408,
} as const;

/** An error as a value: a stable code plus a human message. */
export class OcsError extends Error {
  readonly code: ErrorCode | ClientErrorCode;
  constructor(code: ErrorCode | ClientErrorCode, message: string = codeMessage(code), options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = 'OcsError';
  }
}

function codeMessage(code: ErrorCode | ClientErrorCode): string {
  return Object.hasOwn(ErrorCodes, code) ? ErrorCodes[code as ErrorCode].message : ClientErrorCodes[code as ClientErrorCode].message;
}

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.prototype.hasOwnProperty.call(ErrorCodes, value);
}
