/**
 * A start-up check across keys that failed (src/config/load.ts, tls-files.ts), with the keys it
 * involves: the loader names the environment variables among them, so that a bad value set by
 * WEBSOCKET_TLS_CERT_FILE is not looked for in the file.
 */
import { OcsError } from '../protocol/errors.js';

export class ConfigProblem extends OcsError {
  /** Dotted paths, as in ENV_OVERRIDES. */
  readonly keys: readonly string[];
  constructor(keys: readonly string[], message: string) {
    super('E_CONFIG', `config: ${message}`);
    this.keys = keys;
  }
}
