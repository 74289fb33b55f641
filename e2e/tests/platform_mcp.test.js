// `riptide mcp` driven by the official MCP client (@modelcontextprotocol/sdk) over stdio, in a
// temporary RIPTIDE_HOME: tools/list, then the seed's four tools (create_database,
// database_sync_enable, create_app, connect_app_to_database) and run_migrations,
// deploy_sync_rules, generate_schema, status. Checks the app folder, its .env, and that the sync
// service answers a sync stream for a token signed with the app's key. Bad input is a tool error.
import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { importJWK, SignJWT } from 'jose';
import pg from 'pg';
import { REPO_ROOT, RIPTIDE_BIN } from '../lib/env.js';
import { freePort } from '../lib/service.js';
import { waitFor } from '../lib/wait.js';

let dir;
let home;
let client;
/** What the first test made, for the last one. */
let made;
const APP_SERVER_BIN =
  process.env.REALTIME_APP_SERVER_BIN ?? path.join(REPO_ROOT, 'target', 'debug', 'realtime-app-server');

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'riptide-mcp-e2e-'));
  fs.chmodSync(dir, 0o755); // PostgreSQL runs as `postgres` under root: it must reach the home
  home = path.join(dir, 'home');
  const transport = new StdioClientTransport({
    command: RIPTIDE_BIN,
    args: ['mcp'],
    env: { ...process.env, RIPTIDE_HOME: home, RUST_LOG: 'warn' },
    stderr: 'pipe',
  });
  client = new Client({ name: 'riptide-e2e', version: '1.0.0' });
  await client.connect(transport);
});

after(async () => {
  await client?.close().catch(() => {});
  spawnSync(RIPTIDE_BIN, ['stop', '--all'], { env: { ...process.env, RIPTIDE_HOME: home } });
  fs.rmSync(dir, { recursive: true, force: true });
});

async function call(name, args) {
  const r = await client.callTool({ name, arguments: args });
  assert.notEqual(r.isError, true, `${name} failed: ${JSON.stringify(r.content)}`);
  assert.ok(r.structuredContent, `${name} returned no structured content`);
  return r.structuredContent;
}

test('the seed: four MCP tools make a connected app with a running sync service', async () => {
  const { tools } = await client.listTools();
  const names = tools.map((t) => t.name).sort();
  for (const t of [
    'connect_app_to_database',
    'create_app',
    'create_database',
    'database_sync_enable',
    'deploy_sync_rules',
    'generate_schema',
    'run_migrations',
    'status',
  ]) {
    assert.ok(names.includes(t), `tools/list has ${t}: ${names}`);
  }
  const createDb = tools.find((t) => t.name === 'create_database');
  assert.deepEqual(createDb.inputSchema.required, ['name']);

  const db = await call('create_database', { name: 'todos' });
  assert.match(db.id, /^db_/);
  assert.equal(db.pooledUri, db.directUri);
  assert.equal((await call('create_database', { name: 'todos' })).already, true);

  const sync = await call('database_sync_enable', { databaseId: db.id });
  assert.match(sync.url, /^http:\/\/127\.0\.0\.1:\d+$/);
  const live = await fetch(`${sync.url}/probes/liveness`);
  assert.equal(live.status, 200);

  const app = await call('create_app', { name: 'todos', template: 'realtime', directory: dir });
  assert.match(app.id, /^app_/);
  assert.equal(app.path, fs.realpathSync(path.join(dir, 'todos')));
  for (const f of ['server/Cargo.toml', 'server/Cargo.lock', 'sync-rules.yaml', 'migrations', 'web/package.json']) {
    assert.ok(fs.existsSync(path.join(app.path, f)), `app has ${f}`);
  }
  assert.match(fs.readFileSync(path.join(app.path, 'server/Cargo.toml'), 'utf8'), /name = "todos-server"/);

  const conn = await call('connect_app_to_database', { appId: app.id, databaseId: db.id });
  assert.equal(conn.powersyncUrl, sync.url);
  const envFile = path.join(app.path, '.env');
  assert.equal(fs.statSync(envFile).mode & 0o777, 0o600);
  const env = Object.fromEntries(
    fs
      .readFileSync(envFile, 'utf8')
      .split('\n')
      .filter((l) => l && !l.startsWith('#'))
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
  );
  assert.deepEqual(Object.keys(env).sort(), [
    'DIRECT_DATABASE_URL',
    'POWERSYNC_API_TOKEN',
    'POWERSYNC_SIGNING_KEY',
    'POWERSYNC_URL',
    'VITE_DATABASE_URL',
    'VITE_POWERSYNC_TOKEN_ENDPOINT',
    'VITE_POWERSYNC_URL',
  ]);
  assert.equal(env.VITE_POWERSYNC_TOKEN_ENDPOINT, '/api/powersync/token');
  assert.equal(env.POWERSYNC_URL, sync.url);
  // The tools return the URI with its password redacted (the local cluster has a SCRAM
  // password); the app's .env (0600) carries the real one.
  const password = new URL(env.DIRECT_DATABASE_URL).password;
  assert.ok(password.length >= 16, 'the .env URL carries the cluster password');
  assert.equal(env.DIRECT_DATABASE_URL.replace(`:${password}@`, ':***@'), db.directUri);
  assert.ok(!JSON.stringify(db).includes(password), 'no tool result carries the password');

  const migrated = await call('run_migrations', { appId: app.id });
  assert.ok(migrated.applied.length > 0);
  const rules = await call('deploy_sync_rules', { appId: 'todos' });
  assert.equal(rules.already, false);
  const schema = await call('generate_schema', { appId: app.id });
  assert.ok(schema.tables.includes('lists'), JSON.stringify(schema));
  const status = await call('status', {});
  assert.equal(status.sync[0].running, true);
  assert.equal(status.apps[0].databaseId, db.id);
  assert.ok(!JSON.stringify(status).includes(env.POWERSYNC_API_TOKEN), 'status holds no secrets');

  // The service trusts the app's key: a user's own list arrives on a sync stream.
  await waitFor(async () => (await fetch(`${sync.url}/probes/readiness`)).ok, {
    timeoutMs: 60_000,
    intervalMs: 200,
    what: 'the rules to be active',
  });
  const pgc = new pg.Client({ connectionString: env.DIRECT_DATABASE_URL });
  await pgc.connect();
  const user = '00000000-0000-4000-8000-000000000001';
  const list = '00000000-0000-4000-8000-0000000000aa';
  try {
    await pgc.query(`INSERT INTO users (id, username, password_hash) VALUES ($1, 'mcpuser', 'x')`, [user]);
    await pgc.query(`INSERT INTO lists (id, owner_id, name) VALUES ($1, $2, 'from mcp')`, [list, user]);
  } finally {
    await pgc.end();
  }
  const jwk = JSON.parse(Buffer.from(env.POWERSYNC_SIGNING_KEY, 'base64').toString('utf8'));
  const key = await importJWK(jwk, 'EdDSA');
  const now = Math.floor(Date.now() / 1000);
  const token = await new SignJWT({ sub: user, aud: 'riptide', iat: now, exp: now + 300 })
    .setProtectedHeader({ alg: 'EdDSA', kid: jwk.kid })
    .sign(key);
  const { value: seen } = await waitFor(
    async () => {
      const ctrl = new AbortController();
      const timer = setTimeout(() => ctrl.abort(), 5000);
      try {
        const res = await fetch(`${sync.url}/sync/stream`, {
          method: 'POST',
          headers: { Authorization: `Token ${token}`, 'Content-Type': 'application/json' },
          body: JSON.stringify({ raw_data: true }),
          signal: ctrl.signal,
        });
        assert.equal(res.status, 200);
        let text = '';
        const reader = res.body.getReader();
        const decoder = new TextDecoder();
        while (!text.includes('checkpoint_complete')) {
          const { value, done } = await reader.read();
          if (done) break;
          text += decoder.decode(value);
        }
        ctrl.abort();
        return text.includes(list) ? text : null;
      } catch {
        return null;
      } finally {
        clearTimeout(timer);
      }
    },
    { timeoutMs: 60_000, intervalMs: 500, what: 'the list on a sync stream' },
  );
  assert.ok(seen.includes('from mcp'));
  made = { app, sync };
});

/** Reads a sync stream until a checkpoint completes; resolves with the text. */
async function syncStreamText(url, token) {
  const ctrl = new AbortController();
  const timer = setTimeout(() => ctrl.abort(), 5000);
  try {
    const res = await fetch(`${url}/sync/stream`, {
      method: 'POST',
      headers: { Authorization: `Token ${token}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ raw_data: true }),
      signal: ctrl.signal,
    });
    if (res.status !== 200) return null;
    let text = '';
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    while (!text.includes('checkpoint_complete')) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value);
    }
    ctrl.abort();
    return text;
  } catch {
    return null;
  } finally {
    clearTimeout(timer);
  }
}

test('the app the tools made works: riptide dev, sign-up, token, upload, sync', async () => {
  assert.ok(made, 'the first test made an app');
  assert.ok(fs.existsSync(APP_SERVER_BIN), `${APP_SERVER_BIN} is built (cargo build --workspace)`);
  const port = await freePort();
  const dev = spawn(RIPTIDE_BIN, ['dev', '--no-web', '--port', String(port), '--server-bin', APP_SERVER_BIN], {
    cwd: made.app.path,
    env: { ...process.env, RIPTIDE_HOME: home },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines = [];
  dev.stdout.on('data', (c) => lines.push(...c.toString().split('\n')));
  dev.stderr.on('data', (c) => lines.push(...c.toString().split('\n')));
  const exited = new Promise((resolve) => dev.on('exit', (code) => resolve(code)));
  try {
    await waitFor(() => lines.some((l) => l.includes('[dev] ready: open')), {
      timeoutMs: 120_000,
      intervalMs: 200,
      what: 'riptide dev to be ready',
      describe: () => lines.slice(-30).join('\n'),
    });
    const api = `http://127.0.0.1:${port}/api`;
    const json = { 'Content-Type': 'application/json' };
    const signup = await fetch(`${api}/auth/signup`, {
      method: 'POST',
      headers: json,
      body: JSON.stringify({ username: 'mcp_app_user', password: 'correct horse battery' }),
    });
    assert.equal(signup.status, 201, await signup.clone().text());
    const { user } = await signup.json();
    const cookie = signup.headers.get('set-cookie').split(';')[0];
    const tokenRes = await fetch(`${api}/powersync/token`, { headers: { cookie } });
    assert.equal(tokenRes.status, 200);
    const { token } = await tokenRes.json();
    const list = crypto.randomUUID();
    const upload = await fetch(`${api}/sync`, {
      method: 'POST',
      headers: { ...json, cookie },
      body: JSON.stringify({
        batch: [{ op: 'PUT', type: 'lists', id: list, data: { name: 'made by tools', owner_id: user.id }, op_id: 1, tx_id: 1 }],
      }),
    });
    assert.equal(upload.status, 200, await upload.clone().text());
    const { value: text } = await waitFor(
      async () => {
        const t = await syncStreamText(made.sync.url, token);
        return t && t.includes(list) ? t : null;
      },
      { timeoutMs: 30_000, intervalMs: 500, what: 'the uploaded list on the sync stream' },
    );
    assert.ok(text.includes('made by tools'));
  } finally {
    dev.kill('SIGINT');
    assert.equal(await exited, 0, lines.slice(-20).join('\n'));
  }
});

test('bad input is a tool error with a clear message, and changes nothing', async () => {
  const before = fs.readFileSync(path.join(home, 'state.json'), 'utf8');
  const cases = [
    ['database_sync_enable', { databaseId: 'db_nope' }, /no database "db_nope"/],
    ['create_database', { name: 'Not Valid' }, /invalid name/],
    ['create_app', { name: 'todos', template: 'realtime', directory: path.join(dir, 'other') }, /already exists/],
    ['create_app', { name: 'x2', template: 'nope', directory: dir }, /unknown template/],
    ['connect_app_to_database', { appId: 'app_nope', databaseId: 'todos' }, /no app "app_nope"/],
  ];
  for (const [name, args, message] of cases) {
    const r = await client.callTool({ name, arguments: args });
    assert.equal(r.isError, true, `${name} ${JSON.stringify(args)} should fail`);
    assert.match(r.content[0].text, message);
  }
  assert.equal(fs.readFileSync(path.join(home, 'state.json'), 'utf8'), before);
  assert.ok(!fs.existsSync(path.join(dir, 'other', 'todos')));
  assert.ok(!fs.existsSync(path.join(dir, 'x2')));
});
