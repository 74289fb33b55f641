// The official @powersync/web SDK in headless Chromium: builds the test page in `e2e/web` with
// Vite, serves it from a static server on its own port (a different origin from the service, so
// CORS is exercised), and drives it with playwright-core. Recipe: shared/docs/official-clients.md.
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { build } from 'vite';
import { E2E_DIR } from './env.js';
import { PgConnector } from './client.js';

export const CHROMIUM = process.env.RIPTIDE_CHROMIUM ?? '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** `vite build` of `e2e/web` into a fresh temporary directory; returns that directory. */
export async function buildWebPage() {
  const outDir = fs.mkdtempSync(path.join(os.tmpdir(), 'riptide-e2e-web-'));
  await build({ configFile: path.join(E2E_DIR, 'web', 'vite.config.js'), build: { outDir, emptyOutDir: true } });
  return outDir;
}

const MIME = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.wasm': 'application/wasm',
  '.css': 'text/css',
  '.json': 'application/json',
};

/** A static file server for `dir` on 127.0.0.1 (free port). `close()` stops it. */
export async function serveStatic(dir) {
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    const rel = decodeURIComponent(url.pathname === '/' ? '/index.html' : url.pathname);
    const file = path.join(dir, path.normalize(rel));
    if (!file.startsWith(dir) || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
      res.writeHead(404).end('not found');
      return;
    }
    res.writeHead(200, { 'content-type': MIME[path.extname(file)] ?? 'application/octet-stream', 'cache-control': 'no-store' });
    fs.createReadStream(file).pipe(res);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}/`,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections?.();
        server.close(() => resolve());
      }),
  };
}

/** Chromium with the flags of the doc and a fresh user-data dir (removed by `close()`). */
export async function launchChromium() {
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'riptide-e2e-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
  });
  return {
    context,
    async close() {
      await context.close().catch(() => {});
      fs.rmSync(userDataDir, { recursive: true, force: true });
    },
  };
}

/**
 * One page running the test app for user `sub`: `getToken()` answers the page's
 * fetchCredentials, uploads are applied to `sourcePool` by the same connector code as for
 * @powersync/node. Every console message and page error is recorded (`messages`), with the
 * phase label current when it arrived (`setPhase`).
 */
export async function openWebClient({ context, pageUrl, endpoint, getToken, sourcePool, name }) {
  const page = await context.newPage();
  const connector = new PgConnector({ endpoint, getToken, sourcePool });
  const messages = [];
  let phase = 'start';
  const record = (type, text) => {
    messages.push({ at: new Date().toISOString(), phase, type, text });
    if (messages.length > 5000) messages.shift();
  };
  page.on('console', (m) => record(m.type(), m.text()));
  page.on('pageerror', (e) => record('pageerror', e.stack ?? String(e)));
  page.on('crash', () => record('crash', 'page crashed'));
  await page.exposeFunction('riptideFetchCredentials', () => connector.fetchCredentials());
  await page.exposeFunction('riptideUpload', async (entries) => {
    // Reuse PgConnector.uploadData: one client transaction = one Postgres transaction.
    let given = false;
    await connector.uploadData({
      getNextCrudTransaction: async () => {
        if (given) return null;
        given = true;
        return { crud: entries.map((e) => ({ ...e, toJSON: () => e })), complete: async () => {} };
      },
    });
  });
  await page.goto(pageUrl);
  await page.waitForFunction(() => window.riptide !== undefined, null, { timeout: 30_000 });
  const call = (method, ...args) => page.evaluate(([m, a]) => window.riptide[m](...a), [method, args]);
  await call('open', `${name}.db`);
  return {
    name,
    page,
    connector,
    messages,
    setPhase(p) {
      phase = p;
    },
    connect: (connectionMethod) => call('connect', connectionMethod),
    waitForFirstSync: (timeoutMs = 30_000) => call('waitForFirstSync', timeoutMs),
    query: (sql, params = []) => call('query', sql, params),
    execute: (sql, params = []) => call('execute', sql, params),
    status: () => call('status'),
    close: () => call('close'),
    log(n = 80) {
      return messages
        .slice(-n)
        .map((m) => `${m.at} [${name}/${m.phase}] ${m.type}: ${m.text}`)
        .join('\n');
    },
  };
}
