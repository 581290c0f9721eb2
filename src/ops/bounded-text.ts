/**
 * A response's body as text, read up to a bound: the CLIs (`npm run dlq`, `npm run report`)
 * read what a server at a URL the user gave answers, and one that is broken or hostile (an
 * endless body, or a declared length of gigabytes) must not grow them without end.
 */
import { Buffer } from 'node:buffer';

export class AnswerTooLarge extends Error {
  constructor(readonly maxBytes: number) {
    super(`the answer is larger than ${maxBytes} bytes (no server of ours sends one that large): not read`);
  }
}

export async function boundedText(res: Response, maxBytes: number): Promise<string> {
  if (Number(res.headers.get('content-length') ?? 0) > maxBytes) {
    await res.body?.cancel();
    throw new AnswerTooLarge(maxBytes);
  }
  if (res.body === null) return '';
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let bytes = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    bytes += value.byteLength;
    if (bytes > maxBytes) {
      await reader.cancel();
      throw new AnswerTooLarge(maxBytes);
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks).toString('utf8');
}
