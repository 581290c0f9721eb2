/**
 * Before a run: does the server implement `send`? One connection sends one to itself. An
 * `ack` means yes; `err` E_BAD_FRAME (unknown op) means not yet (the scenarios then run
 * without sends and the report says "send: unsupported by the server"); silence means the
 * same, with that reason.
 */
import { ErrorCodes } from '../../src/protocol/errors.js';
import { connectWs } from '../wsclient/client.js';

export interface SendProbe {
  supported: boolean;
  note: string;
}

const BAD_FRAME: keyof typeof ErrorCodes = 'E_BAD_FRAME';

export function probeSend(host: string, port: number, path: string, user: string, timeoutMs = 5000, tls = false): Promise<SendProbe> {
  return new Promise((resolve) => {
    let done = false;
    const finish = (r: SendProbe): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      ws.close(1000, 'probe done');
      resolve(r);
    };
    const timer = setTimeout(() => finish({ supported: false, note: `no answer to a send probe within ${timeoutMs} ms` }), timeoutMs);
    const ws = connectWs({
      host,
      port,
      path: `${path}?user=${encodeURIComponent(user)}`,
      ...(tls && { tls: {} }),
      onMessage: (payload) => {
        let f: Record<string, unknown>;
        try {
          f = JSON.parse(payload.toString('utf8')) as Record<string, unknown>;
        } catch {
          return;
        }
        if (f.op === 'welcome') {
          ws.send(JSON.stringify({ op: 'send', to: user, data: 'loadtest probe', ref: 'probe' }));
        } else if (f.op === 'ack' && f.ref === 'probe') {
          finish({ supported: true, note: 'supported' });
        } else if (f.op === 'msg' && f.ackReq === true && f.id !== undefined) {
          ws.send(JSON.stringify({ op: 'ack', id: f.id }));
        } else if (f.op === 'err') {
          const code = String(f.code);
          const message = typeof f.message === 'string' ? f.message : '';
          finish({
            supported: false,
            note: code === BAD_FRAME ? `unsupported by the server (${code}: ${message || 'unknown op'})` : `refused by the server (${code}: ${message})`,
          });
        }
      },
      onClose: (code) => finish({ supported: false, note: `probe connection closed (${code}) before send was answered` }),
      onError: () => {},
    });
  });
}
