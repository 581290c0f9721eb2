/**
 * `npm run reload [-- NAME] [--update-env]`: `pm2 reload NAME` (default ocs-realtime) once the
 * config the new process will read passes `--check`. pm2 stops the old process when the new one
 * is ready or, failing that, after listen_timeout anyway: a plain `pm2 reload` onto a config
 * that exits 2 takes the server down. The check runs the app's own script as pm2 will start it
 * (pm2's record of its cwd, args and environment; with --update-env this shell's environment
 * over it, as `pm2 reload --update-env` does). Exits 2 without reloading if the check fails.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const USAGE = 'usage: npm run reload -- [NAME] [--update-env]   (NAME: the pm2 app, default ocs-realtime)';
const PM2 = createRequire(import.meta.url).resolve('pm2/bin/pm2');

/** What `pm2 jlist` says of an app (the fields this script reads). */
interface Pm2App {
  name: string;
  pm2_env: { pm_exec_path: string; pm_cwd: string; args?: string[] | string | null; exec_interpreter?: string; env?: Record<string, string> };
}

function pm2(args: string[], inherit: boolean): { status: number | null; stdout: string } {
  const run = spawnSync(process.execPath, [PM2, ...args], { encoding: 'utf8', stdio: inherit ? 'inherit' : ['ignore', 'pipe', 'inherit'] });
  return { status: run.status, stdout: run.stdout ?? '' };
}

/**
 * The apps `pm2 jlist` printed, or null when its output holds no JSON list. pm2 may print
 * banners first (`[PM2] Spawning PM2 daemon…` when its daemon was not running, an update
 * notice), whose `[` are not the list's: the list is the last line that parses as one.
 */
function appList(stdout: string): Pm2App[] | null {
  const lines = stdout.split('\n');
  for (let i = lines.length - 1; i >= 0; i--) {
    const line = lines[i]!.trim();
    if (!line.startsWith('[')) continue;
    try {
      const value: unknown = JSON.parse(line);
      if (Array.isArray(value)) return value as Pm2App[];
    } catch {
      // a banner line
    }
  }
  return null;
}

/** Whether pm2's daemon runs (PM2_HOME, else ~/.pm2): \`pm2 jlist\` would start one to answer. */
function daemonRuns(): boolean {
  try {
    const pid = Number(readFileSync(join(process.env.PM2_HOME ?? join(homedir(), '.pm2'), 'pm2.pid'), 'utf8'));
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it runs, as another user.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function main(): number {
  let parsed;
  try {
    parsed = parseArgs({ allowPositionals: true, options: { 'update-env': { type: 'boolean' }, help: { type: 'boolean', short: 'h' } } });
  } catch (err) {
    console.error(`reload: ${(err as Error).message}\n${USAGE}`);
    return 2;
  }
  if (parsed.values.help) {
    console.log(USAGE);
    return 0;
  }
  if (parsed.positionals.length > 1) {
    console.error(USAGE);
    return 2;
  }
  const name = parsed.positionals[0] ?? 'ocs-realtime';
  if (!daemonRuns()) {
    console.error(`reload: pm2 is not running (no live daemon in ${process.env.PM2_HOME ?? '~/.pm2'}): nothing to reload; start the server with: npx pm2 start ecosystem.config.cjs`);
    return 1;
  }
  const list = pm2(['jlist'], false);
  const apps = list.status === 0 ? appList(list.stdout) : null;
  if (apps === null) {
    console.error(`reload: cannot read pm2's list of apps (pm2 jlist exited ${list.status}); is pm2 installed (npm install)?`);
    return 1;
  }
  const app = apps.find((a) => a.name === name);
  if (app === undefined) {
    console.error(`reload: pm2 runs no app named ${name} (start it with: npx pm2 start ecosystem.config.cjs)`);
    return 1;
  }
  const { pm_exec_path: script, pm_cwd: cwd, exec_interpreter: interpreter } = app.pm2_env;
  const args = typeof app.pm2_env.args === 'string' ? app.pm2_env.args.split(' ').filter(Boolean) : (app.pm2_env.args ?? []);
  const env = parsed.values['update-env'] ? { ...app.pm2_env.env, ...process.env } : { ...app.pm2_env.env };
  const node = interpreter === undefined || interpreter === 'node' || interpreter === 'none' ? process.execPath : interpreter;
  const check = spawnSync(node, [script, ...args, '--check'], { cwd, env, encoding: 'utf8' });
  process.stdout.write(check.stdout ?? '');
  process.stderr.write(check.stderr ?? '');
  if (check.status !== 0) {
    console.error(`reload: not reloaded, ${name} runs on as it was (the check above exited ${check.status ?? check.signal})`);
    return 2;
  }
  return pm2(['reload', name, ...(parsed.values['update-env'] ? ['--update-env'] : [])], true).status ?? 1;
}

process.exitCode = main();
