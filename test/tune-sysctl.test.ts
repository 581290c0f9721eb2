/**
 * `npm run tune-sysctl` against a fake /proc tree and a temporary /etc: never the host's.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { EXIT_BELOW, EXIT_NOT_ROOT, EXIT_OK, tuneSysctl } from '../src/ops/tune.js';
import { SETTINGS } from '../src/ops/sysctl.js';
import { writeConfig } from './helpers/server.js';

const CLI = fileURLToPath(new URL('../scripts/tune-sysctl.js', import.meta.url));

/** A host tuned for nothing: every value below what max_connections=2000 needs. */
const LOW: Record<string, string> = {
  'net.core.somaxconn': '128',
  'net.ipv4.tcp_max_syn_backlog': '256',
  'net.ipv4.ip_local_port_range': '60000\t61000',
  'net.ipv4.tcp_tw_reuse': '0',
  'net.core.netdev_max_backlog': '1000',
  'net.core.rmem_max': '212992',
  'net.core.wmem_max': '212992',
  'net.ipv4.tcp_rmem': '4096\t65536\t1048576',
  'net.ipv4.tcp_wmem': '4096\t16384\t1048576',
  'fs.file-max': '8192',
  'fs.nr_open': '4096',
  'net.ipv4.ip_local_reserved_ports': '',
};

/** A host tuned beyond it, with the kernel's LONG_MAX for file-max. */
const HIGH: Record<string, string> = {
  'net.core.somaxconn': '65535',
  'net.ipv4.tcp_max_syn_backlog': '65535',
  'net.ipv4.ip_local_port_range': '1024\t65535',
  'net.ipv4.tcp_tw_reuse': '1',
  'net.core.netdev_max_backlog': '65536',
  'net.core.rmem_max': '16777216',
  'net.core.wmem_max': '16777216',
  'net.ipv4.tcp_rmem': '4096\t131072\t16777216',
  'net.ipv4.tcp_wmem': '4096\t65536\t16777216',
  'fs.file-max': '9223372036854775807',
  'fs.nr_open': '1048576',
  // The server's port (8765, the default) lies inside that range: reserved.
  'net.ipv4.ip_local_reserved_ports': '8765',
};

interface FakeHost {
  proc: string;
  etc: string;
  config: string;
  args: string[];
  sysctl(key: string): string;
  dropIn(): string;
  limits(): string;
}

function fakeHost(values: Record<string, string>, nofile: [number, number], maxConnections = 2000): FakeHost {
  const root = mkdtempSync(join(tmpdir(), 'ocs-tune-'));
  const proc = join(root, 'proc');
  const etc = join(root, 'etc');
  for (const [key, value] of Object.entries(values)) {
    const file = join(proc, 'sys', ...key.split('.'));
    mkdirSync(dirname(file), { recursive: true });
    writeFileSync(file, `${value}\n`);
  }
  mkdirSync(join(proc, 'self'), { recursive: true });
  writeFileSync(
    join(proc, 'self', 'limits'),
    'Limit                     Soft Limit           Hard Limit           Units     \n' +
      `Max open files            ${nofile[0]}                 ${nofile[1]}                 files     \n`,
  );
  mkdirSync(etc);
  const config = writeConfig({ websocket: { server: { max_connections: maxConnections } } });
  const read = (file: string): string => (existsSync(file) ? readFileSync(file, 'utf8') : '');
  return {
    proc,
    etc,
    config,
    args: ['--config', config, '--proc-root', proc, '--etc-root', etc],
    sysctl: (key) => readFileSync(join(proc, 'sys', ...key.split('.')), 'utf8').trim().split(/\s+/).join(' '),
    dropIn: () => read(join(etc, 'sysctl.d', '60-ocs-realtime.conf')),
    limits: () => read(join(etc, 'security', 'limits.d', 'ocs-realtime.conf')),
  };
}

/** The real CLI as a child process: its exit code and output. */
function cli(args: string[], env: NodeJS.ProcessEnv = {}): { code: number | null; stdout: string; stderr: string } {
  const run = spawnSync(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, encoding: 'utf8' });
  return { code: run.status, stdout: run.stdout, stderr: run.stderr };
}

/** The same entry point in this process, with root (or not) decided by the test. */
function tune(args: string[], isRoot: boolean): { code: number; out: string } {
  let out = '';
  const code = tuneSysctl(args, { isRoot, env: {}, print: (t) => (out += `${t}\n`), printError: (t) => (out += `${t}\n`) });
  return { code, out };
}

interface JsonReport {
  maxConnections: number;
  ok: boolean;
  settings: Array<{ key: string; current: string | null; recommended: string; rule: string; pass: boolean | null; why: string }>;
  apply?: { done: boolean; files: Array<{ path: string; status?: string }>; kernel: Array<{ key: string; from: string; to: string; ok?: boolean; error?: string }> };
}

const row = (report: JsonReport, key: string) => report.settings.find((s) => s.key === key)!;

test('on a host below recommendation the report marks every setting LOW and still exits 0', () => {
  const host = fakeHost(LOW, [1024, 1024]);
  const { code, stdout } = cli(host.args);
  assert.equal(code, EXIT_OK);
  assert.match(stdout, /max_connections=2000/);
  for (const { key } of SETTINGS) assert.match(stdout, new RegExp(`^${key.replaceAll('.', '\\.')}\\s.*LOW$`, 'm'), key);
  assert.match(stdout, /12 below recommendation/);
});

test('on a host above recommendation every setting is ok and values are shown as the kernel prints them', () => {
  const host = fakeHost(HIGH, [1048576, 1048576]);
  const { code, stdout } = cli([...host.args, '--check']);
  assert.equal(code, EXIT_OK);
  assert.doesNotMatch(stdout, /LOW/);
  assert.match(stdout, /^fs\.file-max\s+9223372036854775807\s/m, 'LONG_MAX is not rounded through a double');
  assert.match(stdout, /Every setting meets the recommendation/);
});

test('--check exits 1 when anything is below recommendation, 0 when nothing is', () => {
  assert.equal(cli([...fakeHost(LOW, [1024, 1024]).args, '--check']).code, EXIT_BELOW);
  assert.equal(cli([...fakeHost(HIGH, [1048576, 1048576]).args, '--check']).code, EXIT_OK);
  // One setting short is enough.
  assert.equal(cli([...fakeHost({ ...HIGH, 'net.ipv4.tcp_wmem': '4096 16384 1048576' }, [1048576, 1048576]).args, '--check']).code, EXIT_BELOW);
});

test('a setting that cannot be read is not taken to meet its recommendation: named, and --check exits 1', () => {
  const values = { ...HIGH };
  delete values['net.core.somaxconn'];
  const host = fakeHost(values, [1048576, 1048576]);
  const { code, stdout } = cli([...host.args, '--check']);
  assert.equal(code, EXIT_BELOW);
  assert.match(stdout, /^1 could not be read: net\.core\.somaxconn \(is \/proc\/sys readable here\?\)$/m);
  assert.doesNotMatch(stdout, /Every setting meets the recommendation/);
  const nothing = cli(['--check', '--proc-root', join(tmpdir(), 'ocs-tune-no-such-proc'), '--etc-root', host.etc, '--config', host.config]);
  assert.equal(nothing.code, EXIT_BELOW);
  assert.match(nothing.stdout, /12 could not be read/);
});

test('a relative --config is read from where the command was typed (npm gives it as INIT_CWD), not from the package', () => {
  const host = fakeHost(HIGH, [1048576, 1048576], 4321);
  const { code, stdout } = cli(['--json', '--config', basename(host.config), '--proc-root', host.proc, '--etc-root', host.etc], { INIT_CWD: dirname(host.config) });
  assert.equal(code, 0, stdout);
  assert.equal((JSON.parse(stdout) as JsonReport).maxConnections, 4321);
});

test('--json: one document with every setting, its current and recommended value, the verdict and why', () => {
  const host = fakeHost({ ...HIGH, 'net.core.somaxconn': '128' }, [1048576, 1048576]);
  const { code, stdout } = cli([...host.args, '--json']);
  assert.equal(code, EXIT_OK);
  const report = JSON.parse(stdout) as JsonReport;
  assert.equal(report.maxConnections, 2000);
  assert.equal(report.ok, false);
  assert.deepEqual(
    report.settings.map((s) => s.key),
    SETTINGS.map((s) => s.key),
  );
  for (const s of report.settings) {
    assert.deepEqual(Object.keys(s), ['key', 'current', 'recommended', 'rule', 'pass', 'why']);
    assert.ok(s.why.length > 20);
  }
  assert.deepEqual(row(report, 'net.core.somaxconn'), { ...row(report, 'net.core.somaxconn'), current: '128', recommended: '4096', pass: false });
  assert.equal(row(report, 'nofile').current, '1048576 1048576');
  assert.equal(row(report, 'fs.file-max').current, '9223372036854775807');
});

test('recommendations scale with max_connections, read like the server reads it (file, then environment)', () => {
  const host = fakeHost(HIGH, [65536, 65536], 100_000);
  const fromFile = JSON.parse(cli([...host.args, '--json']).stdout) as JsonReport;
  assert.equal(fromFile.maxConnections, 100_000);
  assert.equal(row(fromFile, 'nofile').recommended, '201728 201728', '2 x 100000 + 1024, rounded up to 1024');
  assert.equal(row(fromFile, 'nofile').pass, false);
  assert.equal(row(fromFile, 'net.core.somaxconn').recommended, '65535', 'capped at 65535');
  assert.equal(row(fromFile, 'fs.file-max').recommended, String(2 * 201728 + 65536));
  const fromEnv = JSON.parse(cli([...host.args, '--json'], { WEBSOCKET_MAX_CONNECTIONS: '500' }).stdout) as JsonReport;
  assert.equal(fromEnv.maxConnections, 500);
  assert.equal(row(fromEnv, 'net.core.somaxconn').recommended, '4096', 'never below 4096');
  assert.equal(row(fromEnv, 'nofile').recommended, '2048 2048');
  const bad = cli([...host.args], { WEBSOCKET_MAX_CONNECTIONS: 'many' });
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /WEBSOCKET_MAX_CONNECTIONS/);
});

test('multi-value settings compare field by field; a port range passes when it is at least as wide', () => {
  const check = (key: string, value: string): boolean | null => {
    const host = fakeHost({ ...HIGH, [key]: value }, [1048576, 1048576]);
    return row(JSON.parse(cli([...host.args, '--json']).stdout) as JsonReport, key).pass;
  };
  assert.equal(check('net.ipv4.ip_local_port_range', '32768 60999'), true, '28232 ports, 3024 needed');
  assert.equal(check('net.ipv4.ip_local_port_range', '60000 61000'), false, '1001 ports');
  assert.equal(check('net.ipv4.tcp_rmem', '4096 131072 4194304'), false, 'max below 6291456');
  assert.equal(check('net.ipv4.tcp_rmem', '4096 65536 33554432'), false, 'default below 87380');
  assert.equal(check('net.ipv4.tcp_rmem', '8192 87380 6291456'), true);
  assert.equal(check('net.ipv4.tcp_tw_reuse', '2'), false, 'loopback only');
  assert.equal(check('net.ipv4.tcp_rmem', '4096 87380'), null, 'a malformed value is unknown, not passing');
});

test('--apply as root writes one drop-in of each kind and loads it; a second run leaves both files identical', () => {
  const host = fakeHost(LOW, [1024, 4096]);
  const first = tune([...host.args, '--apply'], true);
  assert.equal(first.code, EXIT_OK, first.out);
  assert.match(first.out, /60-ocs-realtime\.conf: created/);
  assert.match(first.out, /ocs-realtime\.conf: created/);
  assert.equal(host.sysctl('net.core.somaxconn'), '4096');
  assert.equal(host.sysctl('net.ipv4.tcp_rmem'), '4096 87380 6291456');
  assert.equal(host.sysctl('net.ipv4.ip_local_port_range'), '60000 65535', 'the old range grown to hold the 3024 ports needed, never narrowed');
  assert.equal(host.sysctl('net.ipv4.tcp_tw_reuse'), '1');
  const dropIn = host.dropIn();
  const limits = host.limits();
  assert.match(dropIn, /^net\.core\.somaxconn = 4096$/m);
  assert.match(limits, /^\*\s+soft nofile 5120$/m);
  assert.match(limits, /^root\s+hard nofile 5120$/m);
  // The table after --apply shows the values loaded (nofile is this process's limit: only new sessions get more).
  assert.doesNotMatch(first.out, /^(net|fs)\S+\s.*LOW$/m);

  const second = tune([...host.args, '--apply'], true);
  assert.equal(second.code, EXIT_OK);
  assert.match(second.out, /60-ocs-realtime\.conf: unchanged/);
  assert.match(second.out, /no running value to raise/);
  assert.equal(host.dropIn(), dropIn);
  assert.equal(host.limits(), limits);
  for (const { key } of SETTINGS.filter((s) => s.key !== 'nofile')) assert.equal(dropIn.split(`\n${key} = `).length, 2, `${key} once`);
  assert.doesNotMatch(dropIn, /ip_local_reserved_ports/, 'port 8765 lies outside 60000-65535: nothing to reserve');
  assert.deepEqual(readdirSync(join(host.etc, 'sysctl.d')), ['60-ocs-realtime.conf'], 'no temporary file left behind');
});

test('--apply never lowers a value that is already higher, in the kernel or in an earlier drop-in', () => {
  const host = fakeHost({ ...HIGH, 'net.ipv4.tcp_rmem': '4096 65536 16777216', 'net.core.netdev_max_backlog': '1000' }, [1048576, 1048576]);
  mkdirSync(join(host.etc, 'sysctl.d'));
  writeFileSync(join(host.etc, 'sysctl.d', '60-ocs-realtime.conf'), 'net.core.netdev_max_backlog = 100000\n');
  mkdirSync(join(host.etc, 'security', 'limits.d'), { recursive: true });
  writeFileSync(join(host.etc, 'security', 'limits.d', 'ocs-realtime.conf'), '* soft nofile 2000000\n* hard nofile 2000000\n');
  const { code, out } = tune([...host.args, '--apply', '--json'], true);
  assert.equal(code, EXIT_OK, out);
  const report = JSON.parse(out) as JsonReport & { apply: { nofileCappedAt?: number } };
  // Only the low field moves; the higher max stays.
  assert.equal(host.sysctl('net.ipv4.tcp_rmem'), '4096 87380 16777216');
  assert.equal(host.sysctl('net.core.netdev_max_backlog'), '100000', 'the earlier drop-in held more than recommended');
  assert.equal(host.sysctl('net.core.somaxconn'), '65535');
  assert.doesNotMatch(host.dropIn(), /somaxconn|file-max/, 'settings already above are not pinned');
  assert.match(host.dropIn(), /^net\.ipv4\.tcp_rmem = 4096 87380 16777216$/m);
  assert.match(host.dropIn(), /^net\.core\.netdev_max_backlog = 100000$/m);
  // The one exception: limits.d above fs.nr_open would make every login fail, so it is capped there.
  assert.match(host.limits(), /^\*\s+hard nofile 1048576$/m);
  assert.equal(report.apply.nofileCappedAt, 1048576);
  assert.deepEqual(
    report.apply!.kernel.map((k) => [k.key, k.from, k.to, k.ok]),
    [
      ['net.core.netdev_max_backlog', '1000', '100000', true],
      ['net.ipv4.tcp_rmem', '4096 65536 16777216', '4096 87380 16777216', true],
    ],
  );
});

test('--apply leaves a value past 2^53 as it is (fs.file-max at LONG_MAX, a hand-edited drop-in): never a rounded or 1e+23 one', () => {
  const host = fakeHost({ ...HIGH, 'fs.file-max': '9223372036854775807', 'net.core.somaxconn': '128' }, [1048576, 1048576]);
  mkdirSync(join(host.etc, 'sysctl.d'));
  writeFileSync(join(host.etc, 'sysctl.d', '60-ocs-realtime.conf'), 'fs.file-max = 200000\nnet.core.somaxconn = 99999999999999999999999\n');
  const { code, out } = tune([...host.args, '--apply'], true);
  assert.equal(code, EXIT_OK, out);
  assert.equal(host.sysctl('fs.file-max'), '9223372036854775807');
  const raised = host.sysctl('net.core.somaxconn');
  assert.ok(/^\d+$/.test(raised) && Number(raised) > 128, `raised to the recommendation (${raised}); the drop-in value no kernel takes is not believed`);
  assert.match(host.dropIn(), new RegExp(`^net\\.core\\.somaxconn = ${raised}$`, 'm'));
  assert.doesNotMatch(host.dropIn(), /e\+|9223372036854776000|file-max/);
});

test('--apply names the sysctl files that set its keys again after its drop-in at boot', () => {
  const host = fakeHost({ ...HIGH, 'net.core.somaxconn': '128' }, [1048576, 1048576]);
  mkdirSync(join(host.etc, 'sysctl.d'));
  writeFileSync(join(host.etc, 'sysctl.d', '99-local.conf'), 'net.core.somaxconn = 128\n');
  writeFileSync(join(host.etc, 'sysctl.d', '10-early.conf'), 'net.core.somaxconn = 128\n');
  writeFileSync(join(host.etc, 'sysctl.conf'), '# comment\nnet/core/somaxconn=256\n');
  const { code, out } = tune([...host.args, '--apply'], true);
  assert.equal(code, EXIT_OK, out);
  assert.match(out, /WARNING: at boot these files are read after/);
  assert.match(out, /99-local\.conf: net\.core\.somaxconn = 128/);
  assert.match(out, /sysctl\.conf: net\.core\.somaxconn = 256/);
  assert.doesNotMatch(out, /10-early/, 'a file read before ours is overridden by ours');
});

test('--apply without root writes nothing, prints what it would do and exits 3', () => {
  const host = fakeHost(LOW, [1024, 1024]);
  const { code, out } = tune([...host.args, '--apply'], false);
  assert.equal(code, EXIT_NOT_ROOT);
  assert.match(out, /Not root: nothing written/);
  assert.match(out, /write .*60-ocs-realtime\.conf:\n(.*\n)*\s+\| net\.core\.somaxconn = 4096/);
  assert.match(out, /net\.core\.somaxconn\s+128\s+->\s+4096/);
  assert.deepEqual(readdirSync(host.etc), []);
  assert.equal(host.sysctl('net.core.somaxconn'), '128');
  const json = JSON.parse(tune([...host.args, '--apply', '--json'], false).out) as JsonReport;
  assert.equal(json.apply!.done, false);
});

test('the CLI decides by its own uid: run as an ordinary user, --apply refuses', () => {
  const host = fakeHost(LOW, [1024, 1024]);
  const asRoot = process.geteuid?.() === 0;
  for (const path of [dirname(host.proc), dirname(host.config)]) chmodTree(path);
  const run = spawnSync(process.execPath, [CLI, ...host.args, '--apply'], { encoding: 'utf8', ...(asRoot ? { uid: 65534, gid: 65534 } : {}) });
  assert.equal(run.status, EXIT_NOT_ROOT, run.stderr);
  assert.match(run.stdout, /Not root: nothing written/);
  assert.deepEqual(readdirSync(host.etc), []);
});

/** Root writes any file whatever its mode: drop to an ordinary user so that a 0444 file refuses for real. */
function asOrdinaryUser<T>(run: () => T): T {
  if (process.geteuid?.() !== 0) return run();
  process.seteuid!(65534);
  try {
    return run();
  } finally {
    process.seteuid!(0);
  }
}

/** Lets the ordinary user (nobody) read and write the fake host. */
function chmodTree(path: string): void {
  chmodSync(path, 0o777);
  for (const entry of readdirSync(path, { withFileTypes: true })) {
    const child = join(path, entry.name);
    if (entry.isDirectory()) chmodTree(child);
    else chmodSync(child, 0o666);
  }
}

test('an unwritable /proc/sys file fails that key alone: the others and both drop-ins are still written, exit 1', () => {
  const host = fakeHost(LOW, [1024, 1024]);
  for (const path of [dirname(host.proc), dirname(host.config)]) chmodTree(path);
  chmodSync(join(host.proc, 'sys', 'net', 'core', 'somaxconn'), 0o444);
  const result = asOrdinaryUser(() => tune([...host.args, '--apply', '--json'], true));
  assert.equal(result.code, EXIT_BELOW, result.out);
  const report = JSON.parse(result.out) as JsonReport;
  const somaxconn = report.apply!.kernel.find((k) => k.key === 'net.core.somaxconn')!;
  assert.deepEqual(somaxconn, { key: 'net.core.somaxconn', from: '128', to: '4096', ok: false, error: 'EACCES' });
  assert.ok(report.apply!.kernel.filter((k) => k.key !== 'net.core.somaxconn').every((k) => k.ok));
  assert.equal(host.sysctl('net.core.somaxconn'), '128');
  assert.equal(host.sysctl('net.core.netdev_max_backlog'), '4096');
  assert.match(host.dropIn(), /^net\.core\.somaxconn = 4096$/m, 'kept for the next boot or a host where it can be written');
  assert.match(host.limits(), /soft nofile 5120/);
  assert.equal(row(report, 'net.core.somaxconn').pass, false, 'the table shows what the kernel holds now');
});

test("the server's port inside the ephemeral range and unreserved is flagged (--check exits 1); --apply reserves it, keeps it reserved at boot, and leaves other reservations", () => {
  // max_connections 63000: the range recommended is 1512-65535, which holds the default port 8765.
  const host = fakeHost({ ...LOW, 'net.ipv4.ip_local_reserved_ports': '9000-9100' }, [1024, 4096], 63_000);
  // Before: the range 60000-61000 leaves 8765 out.
  const before = JSON.parse(cli([...host.args, '--json']).stdout) as { serverPort: unknown };
  assert.deepEqual(before.serverPort, { port: 8765, range: '60000 61000', reserved: '9000-9100', exposed: false });
  const planned = tune([...host.args, '--apply'], false);
  assert.match(planned.out, /reserve port 8765: net\.ipv4\.ip_local_reserved_ports "9000-9100" -> "9000-9100,8765"/);
  const applied = tune([...host.args, '--apply'], true);
  assert.equal(applied.code, EXIT_OK, applied.out);
  assert.equal(host.sysctl('net.ipv4.ip_local_port_range'), '1512 65535');
  assert.equal(host.sysctl('net.ipv4.ip_local_reserved_ports'), '9000-9100,8765');
  assert.match(applied.out, /Server port 8765: reserved/);
  assert.match(host.dropIn(), /^net\.ipv4\.ip_local_reserved_ports = 9000-9100,8765$/m);
  // Run again: nothing to reserve, but the drop-in keeps the line for the next boot.
  assert.equal(tune([...host.args, '--apply'], true).code, EXIT_OK);
  assert.match(host.dropIn(), /^net\.ipv4\.ip_local_reserved_ports = 9000-9100,8765$/m);

  // A range that holds the port with no reservation: --check fails and says why.
  const exposed = fakeHost({ ...HIGH, 'net.ipv4.ip_local_reserved_ports': '' }, [1048576, 1048576]);
  const checked = cli([...exposed.args, '--check']);
  assert.equal(checked.code, EXIT_BELOW);
  assert.match(checked.stdout, /Server port 8765 lies inside net\.ipv4\.ip_local_port_range 1024 65535 and is not in net\.ipv4\.ip_local_reserved_ports/);
  const report = JSON.parse(cli([...exposed.args, '--json']).stdout) as { ok: boolean; serverPort: Record<string, unknown> };
  assert.deepEqual([report.ok, report.serverPort], [false, { port: 8765, range: '1024 65535', reserved: '', exposed: true }]);
});
