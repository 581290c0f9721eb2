/**
 * The SDK in tests: an OcsClient on the `ws` package (Node 20 has no global WebSocket) that
 * records what the application saw, and waits for it.
 */
import WebSocket from 'ws';
import { OcsClient, type ClientOptions, type Message } from '../../src/client/index.js';
import { until } from './messaging.js';

export interface RecordingClient {
  client: OcsClient;
  /** Every message the application was handed, in order. */
  messages: Message[];
  /** Every disconnect: its close code. */
  disconnects: number[];
  gaps: Array<{ group: string; reason: string }>;
  errors: Error[];
  /** Waits until the application has been handed `count` messages (matching `match`). */
  received(count: number, match?: (m: Message) => boolean, timeoutMs?: number): Promise<Message[]>;
}

export function sdkClient(port: number, options: Partial<ClientOptions> = {}): RecordingClient {
  const client = new OcsClient({ url: `ws://127.0.0.1:${port}/ws`, WebSocket, ...options });
  const messages: Message[] = [];
  const disconnects: number[] = [];
  const gaps: Array<{ group: string; reason: string }> = [];
  const errors: Error[] = [];
  client.on('message', (m) => messages.push(m));
  client.on('disconnect', (d) => disconnects.push(d.code));
  client.on('gap', (g) => gaps.push({ group: g.group, reason: g.reason }));
  client.on('error', (e) => errors.push(e));
  return {
    client,
    messages,
    disconnects,
    gaps,
    errors,
    received: (count, match = () => true, timeoutMs = 10_000) =>
      until(() => {
        const seen = messages.filter(match);
        return seen.length >= count ? seen : undefined;
      }, `${count} messages (have ${messages.filter(match).length})`, timeoutMs),
  };
}

/** Resolves at the client's next `open` (a reconnect's welcome). */
export function nextOpen(client: OcsClient, timeoutMs = 15_000): Promise<{ reconnected: boolean }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no reconnect in time')), timeoutMs);
    client.once('open', (welcome) => {
      clearTimeout(timer);
      resolve(welcome);
    });
  });
}
