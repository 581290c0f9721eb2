/**
 * The chat example in a real browser: Debian's chromium driven by playwright-core, two pages
 * (alice and bob) on the SDK's browser build, served by examples/chat/serve.mjs, against the
 * real server with tokens. They chat in a group and directly; then the server restarts (a new
 * process on the same port and store) and both pages recover by themselves: re-joined, a
 * direct message typed while the server was down delivered once. A screenshot of alice's page
 * goes to docs/chat.png (shown in the README) with UPDATE_SCREENSHOT=1, else to a temp file.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test } from 'node:test';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { startServer, type ServerProcess as ExampleProcess } from '../tools/lib/server-process.js';
import { until } from './helpers/messaging.js';
import { startProcess, tempDataDir, testConfig, type ServerProcess } from './helpers/server.js';

const CHROMIUM = '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const SERVE = fileURLToPath(new URL('../../examples/chat/serve.mjs', import.meta.url));
const SCREENSHOT = process.env.UPDATE_SCREENSHOT === '1' ? fileURLToPath(new URL('../../docs/chat.png', import.meta.url)) : join(tmpdir(), `ocs-chat-${process.pid}.png`);
const SECRET = 'chat-example-secret';

const skip = existsSync(CHROMIUM) ? false : `SKIPPED: ${CHROMIUM} is not installed (apt-get install -y chromium); the chat example was not tested in a browser`;
if (skip) process.stderr.write(`\n*** client-browser.test: ${skip} ***\n\n`);

/** The texts of the messages a page shows in its open conversation. */
const texts = (page: Page): Promise<string[]> => page.$$eval('#messages li .text', (items) => items.map((item) => item.textContent ?? ''));

async function seesText(page: Page, text: string): Promise<void> {
  await until(async () => ((await texts(page)).includes(text) ? true : undefined), `"${text}" on the page`, 15_000);
}

async function submit(page: Page, input: string, value: string): Promise<void> {
  await page.fill(input, value);
  await page.press(input, 'Enter');
}

describe('the chat example in chromium, two users, across a server restart', { skip }, () => {
  let server: ServerProcess;
  let example: ExampleProcess;
  let context: BrowserContext;
  let profile: string;
  let alice: Page;
  let bob: Page;
  const dataDir = tempDataDir();
  const pageErrors: string[] = [];
  // #lobby keeps history (persisted), so a page that reconnects recovers what it missed.
  const serverConfig = (port = 0): Record<string, unknown> =>
    testConfig({ websocket: { server: { port }, auth: { secret: SECRET, allow_anonymous: false }, history: [{ pattern: 'lobby', size: 1000 }] }, history: { persist: true }, store: { data_dir: dataDir } });

  before(async () => {
    server = await startProcess(serverConfig());
    example = await startServer([process.execPath, SERVE, '--port', '0', '--ws', `ws://127.0.0.1:${server.port}/ws`], { env: { WEBSOCKET_AUTH_SECRET: SECRET } });
    profile = mkdtempSync(join(tmpdir(), 'ocs-chromium-'));
    context = await chromium.launchPersistentContext(profile, { executablePath: CHROMIUM, args: CHROMIUM_ARGS, viewport: { width: 1100, height: 640 } });
    const open = async (user: string): Promise<Page> => {
      const page = await context.newPage();
      page.on('pageerror', (err) => pageErrors.push(`${user}: ${err.message}`));
      await page.goto(`http://127.0.0.1:${example.port}/?user=${user}`);
      await page.waitForSelector('#state[data-state="open"]');
      return page;
    };
    alice = await open('alice');
    bob = await open('bob');
  });
  after(async () => {
    await context?.close();
    if (profile) rmSync(profile, { recursive: true, force: true });
    await example?.stop();
    await server?.stop();
  });

  test('both join #lobby and see each other’s messages; presence lists who is there', async () => {
    for (const page of [alice, bob]) {
      await submit(page, '#group', 'lobby');
      await page.waitForSelector('#groups li[data-key="g:lobby"].current');
    }
    await submit(alice, '#text', 'hi bob');
    await seesText(bob, 'hi bob');
    await submit(bob, '#text', 'hi alice');
    await seesText(alice, 'hi alice');
    assert.deepEqual(await texts(alice), ['hi bob', 'hi alice']);
    const present = async (page: Page): Promise<string[]> => page.$$eval('#presence li', (items) => items.map((item) => item.textContent ?? ''));
    await until(async () => ((await present(alice)).join() === 'alice,bob' && (await present(bob)).join() === 'alice,bob' ? true : undefined), 'both in both presence lists');
  });

  test('a direct message reaches only its recipient, who sees an unread count', async () => {
    await submit(bob, '#dm-to', 'alice');
    await submit(bob, '#text', 'psst, alice');
    await until(async () => ((await alice.textContent('#peers li[data-key="u:bob"] .unread')) === '1' ? true : undefined), 'an unread direct message');
    await alice.click('#peers li[data-key="u:bob"]');
    await seesText(alice, 'psst, alice');
    assert.deepEqual(await texts(bob), ['psst, alice'], 'the sender sees its own copy');
  });

  test('the server restarts: both pages reconnect by themselves, re-join #lobby, and messages typed while it was down arrive once', async () => {
    await server.stop('SIGTERM');
    await until(async () => ((await alice.getAttribute('#state', 'data-state')) === 'reconnecting' ? true : undefined), 'alice sees the connection lost');
    // Typed while there is no server: the SDK holds them until it is connected again.
    await submit(bob, '#text', 'sent while the server was down');
    await bob.click('#groups li[data-key="g:lobby"]');
    await submit(bob, '#text', 'lobby, while the server was down');
    server = await startProcess(serverConfig(server.port));
    for (const page of [alice, bob]) {
      await until(async () => ((await page.getAttribute('#state', 'data-connections')) === '2' ? true : undefined), 'a second connection', 30_000).catch(async (err: Error) => {
        throw new Error(`${err.message}; its log: ${await page.textContent('#log')}`);
      });
    }
    await seesText(alice, 'sent while the server was down');
    await alice.click('#groups li[data-key="g:lobby"]');
    await seesText(alice, 'lobby, while the server was down');
    await submit(alice, '#text', 'back again');
    await bob.click('#groups li[data-key="g:lobby"]');
    await seesText(bob, 'back again');
    await alice.click('#peers li[data-key="u:bob"]');
    assert.deepEqual(await texts(alice), ['psst, alice', 'sent while the server was down'], 'each direct message once');
    assert.match((await alice.textContent('#log')) ?? '', /closed 1012.*reconnected/s);
    await alice.click('#groups li[data-key="g:lobby"]');
    assert.deepEqual(await texts(alice), ['hi bob', 'hi alice', 'lobby, while the server was down', 'back again'], 'each group message once, in order');
    assert.match((await alice.textContent('#log')) ?? '', /re-joined lobby, nothing missed/);
    await alice.screenshot({ path: SCREENSHOT });
    assert.deepEqual(pageErrors, []);
  });
});
