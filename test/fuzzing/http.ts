/**
 * Raw HTTP on a TCP socket, for requests no HTTP client would send: odd methods, paths and
 * headers, several requests in one write. Judges the answers: a refusal with a JSON body
 * carries a code from the one table (src/protocol/errors.ts: an ErrorCodes code, as the
 * upgrade's refusals carry, or an HttpCodes code with its own status), nothing answers 5xx.
 */
import { connect } from 'node:net';
import { HttpCodes, isErrorCode } from '../../src/protocol/errors.js';
import type { HttpRequestSpec } from './arbitraries.js';
import { renderHttp } from './render.js';

export interface HttpResponse {
  status: number;
  body: string;
  /** The answer to a HEAD request: headers only, whatever its content-length says. */
  head: boolean;
}

/** How long to wait for more after the last bytes came in (less once every request is answered). */
const QUIET_MS = 250;
const ANSWERED_QUIET_MS = 50;
/** How long to wait when the server says nothing at all (uWS ignores some malformed requests until its idle timeout). */
const SILENCE_MS = 400;
const TIMEOUT_MS = 2000;

/**
 * Writes the requests in one write and collects what comes back until the server closes, goes
 * quiet after answering, or the timeout. `silenceMs`: how long to wait for the first bytes (a
 * caller that knows an answer must come waits longer: a busy machine can take more than 400 ms).
 */
export function exchange(port: number, requests: readonly HttpRequestSpec[], silenceMs = SILENCE_MS): Promise<{ responses: HttpResponse[]; rest: string }> {
  const methods = requests.map((r) => r.method);
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(Buffer.concat(requests.map(renderHttp))));
    let received = Buffer.alloc(0);
    let quiet: NodeJS.Timeout | null = null;
    const done = (): void => {
      clearTimeout(timer);
      if (quiet) clearTimeout(quiet);
      if (silence) clearTimeout(silence);
      socket.destroy();
      resolve(parseResponses(received.toString('latin1'), methods));
    };
    const timer = setTimeout(done, TIMEOUT_MS);
    let silence: NodeJS.Timeout | null = setTimeout(done, silenceMs);
    socket.on('data', (chunk: Buffer) => {
      if (silence) clearTimeout(silence);
      silence = null;
      received = Buffer.concat([received, chunk]);
      const { responses } = parseResponses(received.toString('latin1'), methods);
      if (quiet) clearTimeout(quiet);
      quiet = setTimeout(done, responses.length >= requests.length ? ANSWERED_QUIET_MS : QUIET_MS);
    });
    socket.on('error', () => {});
    socket.on('close', done);
  });
}

/**
 * Responses in order (Content-Length framed, as uWS writes them; the answer to the i-th request
 * has no body when `methods[i]` is HEAD, in any case, as uWS reads methods); `rest` is what did
 * not parse as one.
 */
export function parseResponses(text: string, methods: readonly string[] = []): { responses: HttpResponse[]; rest: string } {
  const responses: HttpResponse[] = [];
  let at = 0;
  for (;;) {
    const end = text.indexOf('\r\n\r\n', at);
    if (end < 0) break;
    const head = text.slice(at, end);
    const status = /^HTTP\/1\.[01] (\d{3})/.exec(head);
    if (!status) break;
    const isHead = methods[responses.length]?.toUpperCase() === 'HEAD';
    const length = /\r\ncontent-length: *(\d+)/i.exec(head);
    const bodyLength = length && !isHead ? Number(length[1]) : 0;
    if (end + 4 + bodyLength > text.length) break;
    responses.push({ status: Number(status[1]), body: text.slice(end + 4, end + 4 + bodyLength), head: isHead });
    at = end + 4 + bodyLength;
    // A 101 hands the connection to WebSocket: what follows is frames.
    if (status[1] === '101') return { responses, rest: '' };
  }
  return { responses, rest: text.slice(at) };
}

export function judgeHttp(responses: readonly HttpResponse[], rest: string): string[] {
  const problems: string[] = [];
  if (rest.length > 0) problems.push(`unparseable bytes after ${responses.length} response(s): ${JSON.stringify(rest.slice(0, 120))}`);
  for (const res of responses) {
    if (res.status >= 500) problems.push(`HTTP ${res.status}: ${res.body.slice(0, 200)}`);
    if (res.status < 400 || res.head) continue;
    let code: unknown;
    try {
      code = (JSON.parse(res.body) as { code?: unknown }).code;
    } catch {
      problems.push(`HTTP ${res.status} refusal without a JSON body: ${JSON.stringify(res.body.slice(0, 120))}`);
      continue;
    }
    if (typeof code === 'string' && Object.hasOwn(HttpCodes, code)) {
      const { status } = HttpCodes[code as keyof typeof HttpCodes];
      if (status !== res.status) problems.push(`HTTP ${res.status} refusal with code ${code}, whose status is ${status}`);
    } else if (!isErrorCode(code)) problems.push(`HTTP ${res.status} refusal with a code not in the table: ${String(code)}`);
  }
  return problems;
}
