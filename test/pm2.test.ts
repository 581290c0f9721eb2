/**
 * pm2 itself (node_modules/pm2, a daemon of its own in a temp PM2_HOME, killed afterwards)
 * running ecosystem.config.cjs as shipped, with only its --config pointed at a test file (a
 * free port, a temp store, a secret, no per-address limits for 500 clients from one host):
 * `pm2 reload` with 500 token-authenticated clients connected and acknowledged sends and pubs
 * flowing, then `pm2 delete`; and the same reload with the old process killed mid-drain.
 * Through the first reload an SDK client follows a group that keeps history (history.persist)
 * while another publishes to it: it recovers exactly on the new process.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import WebSocket from 'ws';
import { OcsClient, type Message } from '../src/client/index.js';
import { processAlive } from '../src/store/leases.js';
import { Fleet, Prober } from './helpers/fleet.js';
import { until } from './helpers/messaging.js';
import { freePort, runCommand, type CommandResult } from './helpers/server.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const PM2 = join(ROOT, 'node_modules', 'pm2', 'bin', 'pm2');
const SECRET = 'pm2-test-secret-of-at-least-32-bytes';
const USERS = 500;

type LogLine = Record<string, unknown>;

/** A pm2 daemon of the test's own, the app started from a copy of the shipped ecosystem file with only --config changed. */
class Pm2Run {
  readonly home = mkdtempSync(join(tmpdir(), 'ocs-pm2-'));
  readonly ecosystem = join(this.home, 'ecosystem.config.cjs');
  readonly config = join(this.home, 'config.yaml');

  constructor(readonly port: number) {
    const config = this.config;
    writeFileSync(
      config,
      stringify({
        websocket: {
          server: { host: '127.0.0.1', port, shards: 2, max_connections: 5000 },
          auth: { secret: SECRET },
          limits: { messages_per_second: 0, connection_attempts_per_ip: 0, unauthenticated_per_ip: 0 },
          history: [{ pattern: 'room.*', size: 10_000 }],
        },
        store: { data_dir: join(this.home, 'data') },
        history: { persist: true },
      }),
    );
    const shipped = JSON.stringify(join(ROOT, 'ecosystem.config.cjs'));
    writeFileSync(this.ecosystem, `const { apps: [app] } = require(${shipped});\nmodule.exports = { apps: [{ ...app, args: ${JSON.stringify(`--config ${config}`)} }] };\n`);
  }

  pm2(args: string[], timeoutMs = 60_000): Promise<CommandResult> {
    return runCommand(process.execPath, [PM2, ...args], { env: { PM2_HOME: this.home }, cwd: this.home }, timeoutMs);
  }

  /** `npm run reload`: pm2 reload behind a check of the config. */
  reload(): Promise<CommandResult> {
    return runCommand(process.execPath, [join(ROOT, 'dist', 'scripts', 'reload.js')], { env: { PM2_HOME: this.home }, cwd: this.home }, 60_000);
  }

  async processes(): Promise<Array<{ pid: number; status: string; restarts: number }>> {
    const { stdout } = await this.pm2(['jlist']);
    const list = JSON.parse(stdout.slice(stdout.indexOf('['))) as Array<{ pid: number; pm2_env: { status: string; restart_time: number } }>;
    return list.map((p) => ({ pid: p.pid, status: p.pm2_env.status, restarts: p.pm2_env.restart_time }));
  }

  /** The app's log lines (pino JSON) so far: what `pm2 logs` shows. */
  logs(): LogLine[] {
    const file = join(this.home, 'logs', 'ocs-realtime-out.log');
    if (!existsSync(file)) return [];
    return readFileSync(file, 'utf8')
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as LogLine);
  }

  /** What the app logged at error level or wrote to stderr: for a failure's message. */
  problems(): string {
    const errors = this.logs().filter((line) => Number(line.level) >= 50);
    const stderr = join(this.home, 'logs', 'ocs-realtime-error.log');
    return JSON.stringify(errors) + (existsSync(stderr) ? `\n${readFileSync(stderr, 'utf8').slice(-4000)}` : '');
  }

  line(match: (line: LogLine) => boolean, what: string, timeoutMs = 30_000): Promise<LogLine> {
    return until(() => this.logs().find(match), what, timeoutMs);
  }

  /** `pm2 kill`, then the daemon's pid by hand should it still run; the folder goes. */
  async kill(): Promise<void> {
    await this.pm2(['kill']).catch(() => undefined);
    const pidFile = join(this.home, 'pm2.pid');
    if (existsSync(pidFile)) {
      try {
        process.kill(Number(readFileSync(pidFile, 'utf8')), 'SIGKILL');
      } catch {
        // gone already
      }
    }
    rmSync(this.home, { recursive: true, force: true });
  }
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
/** Whether `pid` runs (a zombie does not). */
const alive = (pid: number): boolean => processAlive(pid, readStartTime(pid) ?? '');
function readStartTime(pid: number): string | null {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[19]!;
  } catch {
    return null;
  }
}

/** Starts the app under pm2, connects the fleet and starts its traffic: 100 sends/s and 50 pubs/s. */
async function running(run: Pm2Run): Promise<{ fleet: Fleet; prober: Prober; oldPid: number }> {
  const started = await run.pm2(['start', run.ecosystem]);
  assert.equal(started.code, 0, started.stderr + started.stdout);
  const ready = await run.line((line) => line.msg === 'ready', 'the first ready line');
  assert.equal(ready.authMode, 'jwt');
  assert.equal(ready.ownsStore, true);
  const [app] = await run.processes();
  assert.equal(app?.pid, ready.pid, 'pm2 runs the process that logged ready');
  const fleet = new Fleet({ port: run.port, secret: SECRET, users: USERS, groups: 10 });
  await fleet.connectAll();
  const prober = new Prober(run.port, await fleet.token('prober'));
  fleet.startTraffic(20, 2, 1);
  await sleep(2000);
  return { fleet, prober, oldPid: ready.pid as number };
}

/**
 * Two SDK clients on a history group: one publishes every 20 ms, the other follows. Through a
 * reload both reconnect; the follower re-joins with where it was and should get every message
 * once, offsets without a hole, and no `gap`.
 */
class HistoryFollower {
  readonly group = 'room.reload';
  readonly seen: Message[] = [];
  readonly joins: Array<{ rejoin: boolean; recovered?: boolean }> = [];
  readonly gaps: string[] = [];
  readonly acked: string[] = [];
  publishErrors = 0;
  private publishing = true;
  private publisherDone: Promise<void> = Promise.resolve();

  private constructor(
    readonly follower: OcsClient,
    readonly publisher: OcsClient,
  ) {}

  static async start(port: number, fleet: Fleet): Promise<HistoryFollower> {
    const url = `ws://127.0.0.1:${port}/ws`;
    const make = async (user: string): Promise<OcsClient> => new OcsClient({ url, token: await fleet.token(user), WebSocket: WebSocket as never });
    const h = new HistoryFollower(await make('follower'), await make('publisher'));
    h.follower.on('message', (m) => void (m.group === h.group && h.seen.push(m)));
    h.follower.on('joined', (j) => void h.joins.push({ rejoin: j.rejoin, recovered: j.recovered }));
    h.follower.on('gap', (g) => void h.gaps.push(g.reason));
    await Promise.all([h.follower.connect(), h.publisher.connect()]);
    await h.follower.join(h.group);
    await h.publisher.join(h.group);
    h.publisherDone = h.publish();
    return h;
  }

  private async publish(): Promise<void> {
    for (let n = 0; this.publishing; n++) {
      this.publisher.publish(this.group, { n }).then(
        (id) => void this.acked.push(id),
        () => void this.publishErrors++,
      );
      await sleep(20);
    }
  }

  async stop(): Promise<void> {
    this.publishing = false;
    await this.publisherDone;
  }

  close(): void {
    this.publishing = false;
    this.follower.close();
    this.publisher.close();
  }
}

/** Waits (up to 30 s) until every acknowledged send has reached its recipient. */
async function settled(fleet: Fleet): Promise<string[]> {
  await until(() => (fleet.missing().length === 0 ? true : undefined), 'every acknowledged send delivered', 30_000).catch(() => undefined);
  return fleet.missing();
}

function report(t: TestContext, fleet: Fleet, figures: Record<string, unknown>): void {
  const reconnects = fleet.clients.map((c) => c.reconnects);
  t.diagnostic(
    JSON.stringify({
      ...figures,
      clients: fleet.clients.length,
      reconnectedOnce: reconnects.filter((r) => r === 1).length,
      mostReconnects: Math.max(...reconnects),
      sendsAcked: fleet.ackedSends.size,
      lost: fleet.missing().length,
      duplicates: fleet.duplicates(),
      ...fleet.counts,
    }),
  );
}

describe('pm2 running ecosystem.config.cjs', { skip: process.platform !== 'linux' && 'SO_REUSEPORT hand-over: Linux' }, () => {
  test('pm2 reload with 500 clients and acknowledged traffic: each client reconnects at most once, no acknowledged send is lost or delivered twice; pm2 delete exits 0', async (t) => {
    const run = new Pm2Run(await freePort());
    let fleet: Fleet | null = null;
    let follower: HistoryFollower | null = null;
    try {
      const { fleet: clients, prober, oldPid } = await running(run);
      fleet = clients;
      follower = await HistoryFollower.start(run.port, fleet);
      await sleep(500);
      const reloadStart = Date.now();
      const reload = await run.pm2(['reload', 'ocs-realtime']);
      const reloadEnd = Date.now();
      assert.equal(reload.code, 0, reload.stderr + reload.stdout);
      await sleep(2000);
      fleet.stopTraffic();
      await follower.stop();
      const { gapMs, startedAt } = prober.longestGap(reloadStart, reloadEnd + 1000);
      await prober.stop();
      const missing = await settled(fleet);
      const at = (match: (l: LogLine) => boolean): number | null => {
        const found = run.logs().find(match);
        return found ? Number(found.time) - reloadStart : null;
      };
      report(t, fleet, {
        gapMs,
        // When things happened, ms after `pm2 reload` was run.
        gapStartedMs: startedAt - reloadStart,
        newReadyMs: at((l) => l.msg === 'ready' && l.pid !== oldPid),
        drainStartedMs: at((l) => l.msg === 'shutting down' && l.pid === oldPid),
        oldStoppedMs: at((l) => l.msg === 'stopped' && l.pid === oldPid),
        takeOverMs: at((l) => l.msg === 'store lease taken over: this process delivers the stored messages now'),
        reloadMs: reloadEnd - reloadStart,
        proberAccepted: prober.accepted.length,
        proberFailures: prober.failures,
        historyHeldMs: run.logs().find((l) => l.msg === 'group history loaded; the ops held for it handled')?.heldMs,
        historyPubsAcked: follower.acked.length,
      });

      const [app] = await run.processes();
      assert.equal(app?.status, 'online');
      assert.equal(app?.restarts, 1);
      assert.notEqual(app?.pid, oldPid);
      assert.equal(alive(oldPid), false, 'the old process has exited');
      const logs = run.logs();
      assert.ok(logs.some((l) => l.pid === oldPid && l.msg === 'stopped' && l.exitCode === 0), 'the old process drained and exited 0');
      const newReady = logs.find((l) => l.pid === app!.pid && l.msg === 'ready')!;
      assert.equal(newReady.ownsStore, false, 'the new process stood by while the old one held the store');
      assert.ok(logs.some((l) => l.pid === app!.pid && l.msg === 'store lease taken over: this process delivers the stored messages now' && l.why === 'released'));
      assert.ok(logs.some((l) => l.msg === 'stats' || l.msg === 'ready'), 'pm2 logs holds the server log');

      for (const client of fleet.clients) {
        assert.ok(client.reconnects <= 1, `${client.user} reconnected ${client.reconnects} times`);
        assert.deepEqual(client.closeCodes, client.reconnects === 1 ? [1012] : [], client.user);
      }
      assert.ok(fleet.ackedSends.size > 300, `${fleet.ackedSends.size} acknowledged sends`);
      assert.deepEqual(missing, [], 'no acknowledged send lost');
      assert.equal(fleet.duplicates(), 0, 'no stored message delivered twice');
      // A bound for a machine shared with others; the figure itself is in the diagnostics.
      assert.ok(gapMs < 3000, `longest time without a new connection accepted: ${gapMs} ms`);
      assert.equal(fleet.counts.sendErrors, 0);

      // The history group through the reload: recovered exactly, every acknowledged pub seen once, in offset order.
      const h = follower;
      await until(() => (h.acked.every((id) => h.seen.some((m) => m.id === id)) ? true : undefined), 'every acknowledged pub seen by the follower', 10_000).catch(() => undefined);
      assert.deepEqual(h.joins, [{ rejoin: false, recovered: true }, { rejoin: true, recovered: true }], 'joined, and re-joined on the new process with everything recovered');
      assert.deepEqual(h.gaps, []);
      const offsets = h.seen.map((m) => m.offset!);
      assert.deepEqual(offsets, offsets.map((_, i) => offsets[0]! + i), 'offsets without a hole or a repeat');
      assert.equal(new Set(h.seen.map((m) => m.epoch)).size, 1, 'one epoch across the reload');
      assert.deepEqual(h.acked.filter((id) => !h.seen.some((m) => m.id === id)), [], 'every acknowledged pub reached the follower');
      assert.ok(h.acked.length > 100, `${h.acked.length} pubs acknowledged`);
      h.close();

      fleet.close();
      const deleted = await run.pm2(['delete', 'ocs-realtime']);
      assert.equal(deleted.code, 0);
      await run.line((l) => l.pid === app!.pid && l.msg === 'stopped', 'the stopped line of pm2 delete', 20_000).then((l) => assert.equal(l.exitCode, 0));
      assert.deepEqual(await run.processes(), []);
    } finally {
      follower?.close();
      fleet?.close();
      await run.kill();
    }
  });

  test('npm run reload checks the config first: a broken one is not reloaded, the bad key is named and the server runs on; once fixed it reloads', async () => {
    const run = new Pm2Run(await freePort());
    try {
      const started = await run.pm2(['start', run.ecosystem]);
      assert.equal(started.code, 0, started.stderr + started.stdout);
      const ready = await run.line((line) => line.msg === 'ready', 'the first ready line');
      const good = readFileSync(run.config, 'utf8');
      // A plain `pm2 reload` here would start a process that exits 2, and pm2 would stop the old one after listen_timeout anyway.
      writeFileSync(run.config, good.replace(/shards: 2/, 'shards: two'));
      const refused = await run.reload();
      assert.equal(refused.code, 2, refused.stdout + refused.stderr);
      assert.match(refused.stderr, /websocket\.server\.shards/);
      assert.match(refused.stderr, /not reloaded, ocs-realtime runs on as it was/);
      const [app] = await run.processes();
      assert.deepEqual([app?.pid, app?.status, app?.restarts], [ready.pid, 'online', 0], `the old process serves on, untouched: ${run.problems()}`);
      const client = new WebSocket(`ws://127.0.0.1:${run.port}/ws`);
      await new Promise((resolve, reject) => client.once('open', resolve).once('error', reject));
      client.close();

      writeFileSync(run.config, good);
      const reloaded = await run.reload();
      assert.equal(reloaded.code, 0, reloaded.stdout + reloaded.stderr);
      assert.match(reloaded.stdout, /config OK/);
      const [after] = await run.processes();
      assert.equal(after?.status, 'online');
      assert.equal(after?.restarts, 1);
      assert.notEqual(after?.pid, ready.pid);
    } finally {
      await run.kill();
    }
  });

  test('npm run reload before pm2 runs at all: nothing to reload, exit 1, and no pm2 daemon started', async () => {
    const run = new Pm2Run(await freePort());
    try {
      const result = await run.reload();
      assert.equal(result.code, 1, result.stdout + result.stderr);
      assert.match(result.stderr, /^reload: pm2 is not running \(no live daemon in .+\): nothing to reload/m);
      assert.doesNotMatch(result.stderr, /SyntaxError|\n\s+at /);
      assert.equal(existsSync(join(run.home, 'pm2.pid')), false, 'no daemon started');
      // With the daemon up and no app of that name: said so (its banners are not taken for the app list).
      assert.equal((await run.pm2(['ping'])).code, 0);
      const none = await run.reload();
      assert.equal(none.code, 1, none.stdout + none.stderr);
      assert.match(none.stderr, /^reload: pm2 runs no app named ocs-realtime/m);
    } finally {
      await run.kill();
    }
  });

  test('the old process killed with SIGKILL mid-drain: the new one takes the store over and no acknowledged send is lost', async (t) => {
    const run = new Pm2Run(await freePort());
    let fleet: Fleet | null = null;
    try {
      const { fleet: clients, prober, oldPid } = await running(run);
      fleet = clients;
      const reloadStart = Date.now();
      const reloading = run.pm2(['reload', 'ocs-realtime']);
      // The drain has begun once a client is told 1012; kill the old process in the middle of it.
      await until(() => (fleet!.clients.some((c) => c.closeCodes.includes(1012)) ? true : undefined), 'the drain to begin', 60_000);
      process.kill(oldPid, 'SIGKILL');
      const killedAt = Date.now();
      const reload = await reloading;
      assert.equal(reload.code, 0, reload.stderr + reload.stdout);
      await sleep(2000);
      fleet.stopTraffic();
      const { gapMs } = prober.longestGap(reloadStart, Date.now());
      await prober.stop();
      const missing = await settled(fleet);
      const [app] = await run.processes();
      const taken = run.logs().find((l) => l.pid === app?.pid && l.msg === 'store lease taken over: this process delivers the stored messages now');
      report(t, fleet, { gapMs, takeOverMs: Number(taken?.time) - killedAt, closeCodes: [...new Set(fleet.clients.flatMap((c) => c.closeCodes))] });
      assert.equal(app?.status, 'online');
      assert.notEqual(app?.pid, oldPid);
      assert.equal(taken?.why, 'its process has exited');
      assert.ok(fleet.ackedSends.size > 300);
      assert.deepEqual(missing, [], 'no acknowledged send lost');
      for (const client of fleet.clients) assert.ok(client.reconnects <= 1, `${client.user} reconnected ${client.reconnects} times`);
    } finally {
      fleet?.close();
      await run.kill();
    }
  });
});
