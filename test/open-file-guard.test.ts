/**
 * Near its open-file limit the server closes its listen sockets instead of spinning on accept()
 * (src/primary/open-file-guard.ts), and opens them again once descriptors are free.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { connect as netConnect, type Socket } from 'node:net';
import { describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { OpenFileGuard, type DescriptorProbe } from '../src/primary/open-file-guard.js';
import { createLogger } from '../src/util/logger.js';
import { connect, member } from './helpers/client.js';
import { MAIN, startProcess, testConfig } from './helpers/server.js';

/** A probe the test sets: the lowest free number and the count it reports. */
function fakeProbe(): DescriptorProbe & { lowest: number | null; open: number | null } {
  const probe = {
    lowest: 10 as number | null,
    open: 10 as number | null,
    lowestFree: () => probe.lowest,
    count: () => probe.open,
  };
  return probe;
}

describe('the open-file guard', () => {
  function guarded(limit: number): { guard: OpenFileGuard; probe: ReturnType<typeof fakeProbe>; calls: string[] } {
    const probe = fakeProbe();
    const calls: string[] = [];
    const guard = new OpenFileGuard({ limit, probe, pause: () => calls.push('pause'), resume: () => calls.push('resume'), log: createLogger('silent') });
    return { guard, probe, calls };
  }

  test('pauses when the lowest free descriptor is within the headroom of the limit, or none is free', () => {
    const { guard, probe, calls } = guarded(10_000);
    assert.equal(guard.headroom, 200, '2% of the limit');
    probe.lowest = 9_799;
    guard.check();
    assert.deepEqual(calls, [], 'every number below 9,799 taken still leaves 201');
    probe.lowest = 9_800;
    probe.open = 9_900;
    guard.check();
    assert.deepEqual(calls, ['pause']);
    assert.deepEqual(guard.state, { accepting: false, pauses: 1 });
    const other = guarded(10_000);
    other.probe.lowest = null; // EMFILE
    other.guard.check();
    assert.deepEqual(other.calls, ['pause']);
  });

  test('resumes once a count shows twice the headroom free; not while the count cannot be made or shows less', () => {
    const { guard, probe, calls } = guarded(10_000);
    probe.lowest = null;
    guard.check();
    probe.lowest = 5; // a low hole says nothing of the rest
    probe.open = null; // no descriptor free to read /proc/self/fd
    guard.check();
    probe.open = 9_601;
    guard.check();
    assert.deepEqual(calls, ['pause']);
    probe.open = 9_600;
    guard.check();
    assert.deepEqual(calls, ['pause', 'resume']);
    assert.deepEqual(guard.state, { accepting: true, pauses: 1 });
  });

  test('a small limit keeps 32 descriptors of headroom; an unlimited one is not watched', () => {
    assert.equal(guarded(300).guard.headroom, 32);
    const { guard } = guarded(Infinity);
    guard.start();
    assert.deepEqual(guard.state, { accepting: true, pauses: 0 });
    guard.stop();
  });
});

/** Runs COMMAND... with both open-file limits set to `limit` (`ulimit -n` sets soft and hard). */
const withOpenFiles = (limit: number, ...command: string[]): string[] => ['bash', '-c', `ulimit -n ${limit} && exec "$@"`, 'bash', ...command];

/** CPU time of process `pid` so far, in clock ticks (100 a second). */
function cpuTicks(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return Number(fields[11]) + Number(fields[12]); // utime, stime
}

/** One HTTP/1.1 request on a kept-alive socket: the answer's status line and JSON body. */
function request(socket: Socket, path: string): Promise<{ status: string; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    let text = '';
    const onData = (chunk: Buffer): void => {
      text += chunk.toString();
      const head = text.indexOf('\r\n\r\n');
      const length = /content-length: (\d+)/i.exec(text);
      if (head < 0 || length === null || text.length < head + 4 + Number(length[1])) return;
      socket.off('data', onData);
      resolve({ status: text.slice(0, text.indexOf('\r\n')), body: JSON.parse(text.slice(head + 4, head + 4 + Number(length[1]))) as Record<string, unknown> });
    };
    socket.on('data', onData);
    socket.once('error', reject);
    socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
  });
}

// The flood takes as many sockets as the server's limit, which it raises to 2,048 where it may.
const ourLimit = Number(/^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'))?.[1] ?? Infinity);

test(
  'a flood of silent sockets up to the open-file limit: the server stops accepting instead of spinning, serves its clients, and accepts again once they are gone',
  { skip: ourLimit < 6000 && `this test process may open ${ourLimit} files; the flood needs about 2,100 and the clients a margin` },
  async () => {
    const server = await startProcess(testConfig({ websocket: { server: { shards: 2, max_connections: 10 } } }), {}, withOpenFiles(256, process.execPath, MAIN));
    const pid = server.child.pid!;
    const flood: Socket[] = [];
    const keptAlive = netConnect(server.port, '127.0.0.1');
    const paused = (): Record<string, unknown> | undefined => server.logs.find((line) => line.msg === 'near the open-file limit: not accepting connections until descriptors are free');
    try {
      const alice = await member(server.port, 'alice', ['room']);
      try {
      assert.equal((await request(keptAlive, '/health')).body.accepting, true);
      // Sockets that never send a byte, 100 at a time, until the server says it stopped accepting.
      while (paused() === undefined && flood.length < 4000) {
        for (let i = 0; i < 100; i++) flood.push(netConnect(server.port, '127.0.0.1').on('error', () => {}));
        await sleep(50);
      }
      const pause = paused();
      assert.ok(pause, `no pause after ${flood.length} sockets`);
      assert.equal(pause.level, 40);
      // Without the guard both shards spun on accept(): 190% of a core. Half a core over 2 s is the bound.
      const before = cpuTicks(pid);
      await sleep(2000);
      const used = cpuTicks(pid) - before;
      assert.ok(used < 100, `${used} ticks of CPU in 2 s while paused`);
      alice.send({ op: 'pub', group: 'room', data: { text: 'still here' } });
      assert.deepEqual((await alice.next((f) => f.op === 'msg')).data, { text: 'still here' }, 'an open connection is served');
      const health = await request(keptAlive, '/health');
      assert.equal(health.body.accepting, false);
      assert.equal(health.body.status, 'degraded');
      await assert.rejects(connect(server.port, { query: 'user=bob' }), 'a new connection is refused');
      } finally {
        for (const socket of flood) socket.destroy();
      }
      for (let waited = 0; waited < 5000 && !server.logs.some((line) => line.msg === 'accepting connections again'); waited += 100) await sleep(100);
      const bob = await member(server.port, 'bob', ['room']);
      assert.equal((await request(keptAlive, '/health')).body.accepting, true);
      bob.close();
      alice.close();
    } finally {
      keptAlive.destroy();
      for (const socket of flood) socket.destroy();
      assert.equal(await server.stop('SIGTERM'), 0);
    }
  },
);
