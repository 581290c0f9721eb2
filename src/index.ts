/**
 * Embedding API: start the sharded server inside your own process.
 *
 *   const server = await createServer({ overrides: { websocket: { server: { port: 0 } } } });
 *   ...
 *   await server.close();
 */
import { Buffer } from 'node:buffer';
import { claimPickedPort, claimPort, portIdentity } from './primary/port-claim.js';
import { authMode } from './auth/identity.js';
import { loadConfig, MIN_SECRET_BYTES, shortSecret, type LoadedConfig, type LoadOptions } from './config/load.js';
import { tlsEnabled } from './config/tls-files.js';
import { shardsFor } from './util/cpus.js';
import { startServer, type RunningServer } from './primary/server.js';
import { createLogger, type Logger } from './util/logger.js';
import { VERSION } from './version.js';
import { OcsError } from './protocol/errors.js';

export { ErrorCodes, CloseCodes, OcsError, type ErrorCode } from './protocol/errors.js';
export { loadConfig } from './config/load.js';
export type { Config } from './config/schema.js';
export type { RunningServer, ClusterView } from './primary/server.js';
export type { Processor, ProcessorMessage, SendOptions, BrokerStats } from './broker/broker.js';
export { Priority, ANY_STRATEGIES, type AnyStrategy } from './protocol/frames.js';

export interface CreateServerOptions extends LoadOptions {
  logger?: Logger;
  /** An already loaded configuration; the load options are ignored then. */
  loaded?: LoadedConfig;
}

/** The stores (port-claim.ts's identity) a server of this process serves, from its start to the end of its stop. */
const storesHere = new Set<string>();

export async function createServer(options: CreateServerOptions = {}): Promise<RunningServer> {
  const loaded = options.loaded ?? loadConfig(options);
  const log = options.logger ?? createLogger(loaded.config.logging.level);
  const auth = authMode(loaded.config.websocket.auth);
  const { secret } = loaded.config.websocket.auth;
  if (secret !== '' && shortSecret(secret)) {
    log.warn({ code: 'E_CONFIG' }, `websocket.auth.secret has ${Buffer.byteLength(secret)} bytes: HS256 needs at least ${MIN_SECRET_BYTES}, or one token lets anyone guess it (refused with NODE_ENV=production)`);
  }
  if (auth === 'anonymous' || auth === 'jwt+anonymous') {
    log.warn({ authMode: auth }, 'anonymous connections allowed (?user=ID without a token): development only; set websocket.auth.allow_anonymous: false and a secret for production');
  } else if (auth === 'closed') {
    log.error(
      { code: 'E_CONFIG', authMode: auth },
      'no websocket.auth.secret and anonymous mode is off (NODE_ENV=production): every client is refused with 401 until a secret is set; ' +
        'set WEBSOCKET_AUTH_SECRET (the HS256 key your application signs tokens with) and restart (pm2: `WEBSOCKET_AUTH_SECRET=... npx pm2 reload ocs-realtime --update-env`)',
    );
  }
  const { shards, cpus } = loaded;
  if (shards > shardsFor(cpus)) {
    log.warn(
      { shards, cpus: Math.round(cpus.usable * 100) / 100, affinity: cpus.affinity, cgroupQuota: cpus.quota },
      'more shards than CPUs this process may use: they take turns on the same cores, and a pub with members on two of them waits for the other ' +
        '(about twice the P99 on one core: README, Performance); websocket.server.shards: 0 runs one per CPU',
    );
  }
  // One server per store in this process, from its start to the end of its stop: two open its
  // LMDB environment twice, and a write transaction of one then waits for the other's for good
  // (the event loop blocked: at two starts at once, or a start during a close). A reload's
  // overlap is between two processes, where LMDB's locks work.
  const identity = portIdentity(loaded.config);
  const ownStore = loaded.config.cluster.redis_url === '';
  if (ownStore && storesHere.has(identity)) {
    throw new OcsError('E_STARTUP', `this process already runs a server on ${identity} (starting, running or stopping): one server per store per process`);
  }
  if (ownStore) storesHere.add(identity);
  const server = await claimAndStart(loaded, log, identity).catch((err: unknown) => {
    storesHere.delete(identity);
    throw err;
  });
  if (ownStore) void server.stopped.then(() => storesHere.delete(identity));
  log.info(
    { version: VERSION, pid: process.pid, host: loaded.config.websocket.server.host, port: server.port, tls: tlsEnabled(loaded.config.websocket.server.tls), shards: server.shards, authMode: auth, ownsStore: server.ownsStore, config: loaded.source ?? 'embedded defaults' },
    'ready',
  );
  return server;
}

async function claimAndStart(loaded: LoadedConfig, log: Logger, identity: string): Promise<RunningServer> {
  // Before any shard binds: another server on this port with another store would share it silently (port-claim.ts).
  const { host, port } = loaded.config.websocket.server;
  const releasePort = await claimPort(host, port, identity);
  const server = await startServer(loaded, log, VERSION).catch((err: unknown) => {
    releasePort();
    throw err;
  });
  // Port 0: the port picked is claimed now that the shards listen on it.
  const release = port === 0 ? claimPickedPort(server.port, identity) : releasePort;
  void server.stopped.then(release);
  return server;
}
