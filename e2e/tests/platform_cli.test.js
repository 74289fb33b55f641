// The CLI path a newcomer takes, in a temporary RIPTIDE_HOME: `riptide create-database` (local
// provider: a Riptide-managed cluster) → `sync enable` → `create-app` → `connect` → `dev`; then
// the scaffolded app's page (Vite dev server) in two headless Chromium contexts: a todo written
// in one appears in the other, both ways. Ctrl-C (SIGINT) stops dev cleanly.
//
// Needs: target/debug/riptide; the app's process is target/debug/realtime-app-server when it
// exists (`cargo build -p realtime-app-server`; else `riptide dev` runs `cargo run`, minutes);
// `riptide dev` runs `npm install` in the app's web/ (from the npm cache when warm).
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { chromium } from 'playwright-core';
import { CHROMIUM } from '../lib/browser.js';
import { REPO_ROOT, RIPTIDE_BIN } from '../lib/env.js';
import { freePort } from '../lib/service.js';

const APP_SERVER_BIN =
  process.env.REALTIME_APP_SERVER_BIN ?? path.join(REPO_ROOT, 'target', 'debug', 'realtime-app-server');
const PASSWORD = 'correct horse battery';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'riptide-cli-e2e-'));
fs.chmodSync(dir, 0o755); // PostgreSQL runs as `postgres` under root: it must reach the home
const env = { ...process.env, RIPTIDE_HOME: path.join(dir, 'home') };
let dev;
let browser;

after(async () => {
  await browser?.close().catch(() => {});
  if (dev && dev.exitCode === null) dev.kill('SIGKILL');
  spawnSync(RIPTIDE_BIN, ['stop', '--all'], { env });
  fs.rmSync(dir, { recursive: true, force: true });
});

function riptide(...args) {
  const r = spawnSync(RIPTIDE_BIN, [...args, '--json'], { env, cwd: dir, encoding: 'utf8' });
  assert.equal(r.status, 0, `riptide ${args.join(' ')} failed:\n${r.stderr}`);
  return JSON.parse(r.stdout);
}

/** Starts `riptide dev` in `appDir`; resolves with the URL it prints when ready. */
function startDev(appDir, args) {
  dev = spawn(RIPTIDE_BIN, ['dev', ...args], { env, cwd: appDir, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines = [];
  const onData = (chunk) => lines.push(...chunk.toString().split('\n').filter(Boolean));
  dev.stdout.on('data', onData);
  dev.stderr.on('data', onData);
  dev.lines = lines;
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`dev not ready in time:\n${lines.slice(-60).join('\n')}`)), 600_000);
    const check = () => {
      const ready = lines.find((l) => l.includes('[dev] ready: open '));
      if (ready) {
        clearTimeout(timer);
        resolve(ready.split('[dev] ready: open ')[1].split(' ')[0]);
      } else if (dev.exitCode !== null) {
        clearTimeout(timer);
        reject(new Error(`dev exited (${dev.exitCode}):\n${lines.slice(-60).join('\n')}`));
      } else {
        setTimeout(check, 200);
      }
    };
    check();
  });
}

const listItem = (page, name) => page.getByTestId('list-item').filter({ hasText: name });
const todoItem = (page, description) =>
  page.getByTestId('todo-item').filter({ has: page.getByTestId('todo-description').getByText(description, { exact: true }) });

async function auth(page, username, signUp) {
  if (signUp) await page.getByTestId('auth-mode-toggle').click();
  await page.getByTestId('auth-username').fill(username);
  await page.getByTestId('auth-password').fill(PASSWORD);
  await page.getByTestId('auth-submit').click();
  await page.getByTestId('current-user').getByText(`@${username}`).waitFor({ timeout: 30_000 });
}

async function addTodo(page, description) {
  await page.getByTestId('new-todo-description').fill(description);
  await page.getByTestId('new-todo-description').press('Enter');
  await todoItem(page, description).waitFor({ timeout: 2000 });
}

test('create-database → sync enable → create-app → connect → dev → two browsers see each other\'s todos', { timeout: 900_000 }, async () => {
  const db = riptide('create-database', 'shop');
  const sync = riptide('sync', 'enable', db.id);
  const app = riptide('create-app', 'shop', '--template', 'realtime', '--dir', dir);
  riptide('connect', app.id, db.id);
  assert.equal(fs.statSync(path.join(app.path, '.env')).mode & 0o777, 0o600);
  if (process.env.PLATFORM_CLI_PATCH_PROXY) {
    const vc = path.join(app.path, 'web', 'vite.config.ts');
    fs.writeFileSync(vc, fs.readFileSync(vc, 'utf8').replace(/proxy: \{ '\/api': (`[^`]*`) \}/, "proxy: { '/api': { target: $1, xfwd: true } }"));
  }
  const args = ['--port', String(await freePort()), '--web-port', String(await freePort())];
  if (fs.existsSync(APP_SERVER_BIN)) args.push('--server-bin', APP_SERVER_BIN);
  const url = await startDev(app.path, args);
  assert.ok(dev.lines.some((l) => l.includes('[dev] migrations applied: 0001_init.sql')));
  assert.ok(dev.lines.some((l) => l.startsWith('[server]')));
  assert.ok(dev.lines.some((l) => l.startsWith('[web]')));
  assert.ok(fs.readFileSync(path.join(app.path, 'web/src/lib/schema.ts'), 'utf8').includes('Generated by `riptide schema`'));

  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run'],
  });
  const a = await (await browser.newContext()).newPage();
  const b = await (await browser.newContext()).newPage();
  const consoleLines = [];
  for (const [label, page] of [['a', a], ['b', b]]) {
    page.on('console', (m) => consoleLines.push(`[${label}] ${m.type()}: ${m.text()}`));
    page.on('pageerror', (e) => consoleLines.push(`[${label}] pageerror: ${e.message}`));
  }
  try {
    await browse(a, b, url);
  } catch (e) {
    e.message += `\n--- browser ---\n${consoleLines.slice(-40).join('\n')}\n--- riptide dev ---\n${dev.lines
      .filter((l) => !l.startsWith('[db]'))
      .slice(-40)
      .join('\n')}`;
    throw e;
  }

  // The service is the one `sync enable` started.
  assert.equal((await fetch(`${sync.url}/probes/readiness`)).status, 200);

  // Ctrl-C: dev stops the app's process and Vite and exits 0.
  const exited = new Promise((resolve) => dev.on('exit', (code) => resolve(code)));
  dev.kill('SIGINT');
  assert.equal(await exited, 0, dev.lines.slice(-20).join('\n'));
  await assert.rejects(fetch(url));
});

async function browse(a, b, url) {
  await a.goto(url);
  await auth(a, 'alice', true);
  await a.getByTestId('new-list-name').fill('Groceries');
  await a.getByTestId('new-list-submit').click();
  await listItem(a, 'Groceries').waitFor({ timeout: 5000 });
  await addTodo(a, 'milk');

  await b.goto(url);
  await auth(b, 'alice', false);
  await listItem(b, 'Groceries').click({ timeout: 30_000 });
  await todoItem(b, 'milk').waitFor({ timeout: 15_000 });
  await addTodo(b, 'bread');
  await todoItem(a, 'bread').waitFor({ timeout: 15_000 });
}
