// The realtime app template (templates/realtime) as users run it: `riptide serve` (no sync rules in
// its config, an admin API token, the template's public key), the template's process
// (realtime-app-server: migrations, rules deployment, accounts, tokens, uploads, the built UI)
// in an app folder made like `riptide create-app` makes one, and the UI built with Vite.
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { pgAdminUrl, REPO_ROOT, uniqueSuffix } from './env.js';
import { dbUrl, dropDatabase } from './postgres.js';
import { freePort, serviceConfig, Service } from './service.js';
import { GiveUp, waitFor, withDeadline } from './wait.js';

export const TEMPLATE_DIR = path.join(REPO_ROOT, 'templates', 'realtime');
export const TEMPLATE_WEB_DIR = path.join(TEMPLATE_DIR, 'web');
/** Where migrations/ and sync-rules.yaml are copied from (override only to try a variant). */
const APP_FILES_DIR = process.env.REALTIME_APP_FILES_DIR ?? TEMPLATE_DIR;
export const APP_SERVER_BIN =
  process.env.REALTIME_APP_SERVER_BIN ?? path.join(REPO_ROOT, 'target', 'debug', 'realtime-app-server');

/** Audience of the template's tokens (CONTRACT.md default). */
export const TEMPLATE_AUDIENCE = 'riptide';

/**
 * Everything secret an app holds: a fresh Ed25519 private JWK (and its public half for the
 * service), the service's admin API token.
 */
export function appSecrets() {
  const kid = `k-${crypto.randomBytes(4).toString('hex')}`;
  const { privateKey, publicKey } = crypto.generateKeyPairSync('ed25519');
  const privateJwk = { ...privateKey.export({ format: 'jwk' }), alg: 'EdDSA', kid };
  const publicJwk = { ...publicKey.export({ format: 'jwk' }), alg: 'EdDSA', kid };
  return {
    privateJwk,
    publicJwk,
    /** POWERSYNC_SIGNING_KEY: base64 of the private JWK's JSON. */
    signingKey: Buffer.from(JSON.stringify(privateJwk)).toString('base64'),
    apiToken: crypto.randomBytes(24).toString('hex'),
  };
}

/** Names for an empty source and a storage database (created by {@link createEmptyDatabases}). */
export function databaseNames(slug) {
  const suffix = uniqueSuffix();
  const sourceDb = `e2e_${slug}_src_${suffix}`.toLowerCase();
  const storageDb = `e2e_${slug}_sto_${suffix}`.toLowerCase();
  return { sourceDb, storageDb, sourceUrl: dbUrl(sourceDb), storageUrl: dbUrl(storageDb) };
}

/** Creates the two databases, empty: the template's migrations create the schema. */
export async function createEmptyDatabases(names) {
  const admin = new pg.Client({ connectionString: pgAdminUrl() });
  await admin.connect();
  try {
    await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(names.sourceDb)}`);
    await admin.query(`CREATE DATABASE ${pg.escapeIdentifier(names.storageDb)}`);
  } finally {
    await admin.end();
  }
  const source = new pg.Pool({ connectionString: names.sourceUrl, max: 3 });
  source.on('error', () => {});
  let dropped = false;
  return {
    ...names,
    source,
    async drop() {
      if (dropped) return;
      dropped = true;
      await source.end().catch(() => {});
      await dropDatabase(names.sourceDb);
      await dropDatabase(names.storageDb);
    },
  };
}

/** Runs a command to completion; rejects with its output on a non-zero exit. */
export function run(cmd, args, { cwd, env, timeoutMs = 300_000 } = {}) {
  return new Promise((resolve, reject) => {
    const proc = spawn(cmd, args, { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    proc.stdout.on('data', (d) => (output += d));
    proc.stderr.on('data', (d) => (output += d));
    const timer = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
    proc.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    proc.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve(output);
      else reject(new Error(`${cmd} ${args.join(' ')} exited with ${code ?? signal}:\n${output}`));
    });
  });
}

/**
 * `npx vite build` of templates/realtime/web into `outDir`, with `env` added to the environment
 * (VITE_POWERSYNC_URL, and whatever else an app's .env holds at build time).
 */
export async function buildTemplateUi(outDir, env) {
  if (!fs.existsSync(path.join(TEMPLATE_WEB_DIR, 'node_modules'))) {
    throw new Error(`run \`npm ci\` in ${TEMPLATE_WEB_DIR} first`);
  }
  await run('npx', ['vite', 'build', '--outDir', outDir, '--emptyOutDir', '--logLevel', 'warn'], {
    cwd: TEMPLATE_WEB_DIR,
    env,
  });
  return outDir;
}

/** All files under `dir` (relative paths). */
export function listFiles(dir) {
  const out = [];
  const walk = (d) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const full = path.join(d, e.name);
      if (e.isDirectory()) walk(full);
      else out.push(path.relative(dir, full));
    }
  };
  walk(dir);
  return out.sort();
}

/** An app folder as `riptide create-app` makes it: migrations, sync rules and the built UI. */
export function prepareAppDir(dir, distDir) {
  fs.mkdirSync(dir, { recursive: true });
  fs.cpSync(path.join(APP_FILES_DIR, 'migrations'), path.join(dir, 'migrations'), { recursive: true });
  fs.copyFileSync(path.join(APP_FILES_DIR, 'sync-rules.yaml'), path.join(dir, 'sync-rules.yaml'));
  fs.cpSync(distDir, path.join(dir, 'web', 'dist'), { recursive: true });
  return dir;
}

/** `riptide serve` for the template: no rules in the config (the app deploys them), admin token. */
export function startTemplateService({ dir, port, dbs, secrets }) {
  const configYaml = serviceConfig({
    sourceUrl: dbs.sourceUrl,
    storageUrl: dbs.storageUrl,
    port,
    jwks: [secrets.publicJwk],
    rules: null,
    audience: [TEMPLATE_AUDIENCE],
    extra: `api:\n  tokens: [${JSON.stringify(secrets.apiToken)}]\n`,
  });
  const configPath = path.join(dir, 'powersync.yaml');
  fs.writeFileSync(configPath, configYaml);
  const service = new Service({ configPath, port, logPath: path.join(dir, 'service.log') });
  service.spawn();
  return service;
}

/** Waits until the service answers (it is not *ready* before rules are deployed). */
export async function waitLive(service, timeoutMs = 60_000) {
  await waitFor(
    async () => {
      if (service.exit) throw new GiveUp(`riptide serve exited: ${JSON.stringify(service.exit)}`);
      const res = await fetch(`${service.endpoint}/probes/liveness`, { signal: AbortSignal.timeout(2000) });
      await res.arrayBuffer();
      return res.status === 200;
    },
    { timeoutMs, intervalMs: 100, what: `GET ${service.endpoint}/probes/liveness = 200` },
  );
}

/** The template's process (realtime-app-server), run from the app folder. */
export class AppProcess {
  constructor({ appDir, port, env, logPath }) {
    this.appDir = appDir;
    this.port = port;
    this.env = env;
    this.logPath = logPath;
    this.url = `http://127.0.0.1:${port}`;
    this.output = '';
    this.exit = null;
  }

  spawn() {
    const proc = spawn(APP_SERVER_BIN, [], {
      cwd: this.appDir,
      env: { PATH: process.env.PATH, RUST_BACKTRACE: '1', RUST_LOG: 'info', ...this.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.proc = proc;
    const append = (d) => {
      this.output += d;
      if (this.output.length > 2_000_000) this.output = this.output.slice(-1_000_000);
      if (this.logPath) fs.appendFileSync(this.logPath, d);
    };
    proc.stdout.on('data', append);
    proc.stderr.on('data', append);
    this.exited = new Promise((resolve) => {
      proc.on('error', (err) => {
        append(`spawn error: ${err.message}\n`);
        this.exit = { error: err.message };
        resolve(this.exit);
      });
      proc.on('exit', (code, signal) => {
        append(`----- process exited: code=${code} signal=${signal} -----\n`);
        this.exit = { code, signal };
        resolve(this.exit);
      });
    });
    return this;
  }

  /** Waits for GET /api/health = 200 (migrations have run). */
  async waitHealthy(timeoutMs = 60_000) {
    await waitFor(
      async () => {
        if (this.exit) throw new GiveUp(`realtime-app-server exited before it was healthy: ${JSON.stringify(this.exit)}`);
        const res = await fetch(`${this.url}/api/health`, { signal: AbortSignal.timeout(2000) });
        await res.arrayBuffer();
        return res.status === 200;
      },
      { timeoutMs, intervalMs: 100, what: `GET ${this.url}/api/health = 200` },
    );
    return this;
  }

  tail(lines = 150) {
    return this.output.split('\n').slice(-lines).join('\n');
  }

  async stop(graceMs = 5000) {
    if (!this.proc || this.exit) return this.exit;
    this.proc.kill('SIGTERM');
    try {
      return await withDeadline(this.exited, graceMs, 'realtime-app-server to exit after SIGTERM');
    } catch {
      this.proc.kill('SIGKILL');
      return withDeadline(this.exited, 10_000, 'realtime-app-server to exit after SIGKILL');
    }
  }
}

/** Everything the process reads from the environment (CONTRACT.md), for one app. */
export function appEnv({ dbs, secrets, serviceUrl, port }) {
  return {
    DIRECT_DATABASE_URL: dbs.sourceUrl,
    POWERSYNC_SIGNING_KEY: secrets.signingKey,
    POWERSYNC_URL: serviceUrl,
    POWERSYNC_API_TOKEN: secrets.apiToken,
    POWERSYNC_TOKEN_AUDIENCE: TEMPLATE_AUDIENCE,
    PORT: String(port),
    HOST: '127.0.0.1',
  };
}

export { freePort };

/**
 * Reads the NDJSON sync stream as `token` until the first `checkpoint_complete`; returns every
 * `data` line's ops (with their bucket) and the checkpoint's buckets. `parameters`: client parameters
 * to send (the template's rules use none; a client cannot widen what it gets with them).
 */
export async function readSyncStream(serviceUrl, token, { timeoutMs = 15_000, parameters, streams } = {}) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), timeoutMs);
  try {
    const res = await fetch(`${serviceUrl}/sync/stream`, {
      method: 'POST',
      headers: { Authorization: `Token ${token}`, 'Content-Type': 'application/json', Accept: 'application/x-ndjson' },
      body: JSON.stringify({ buckets: [], include_checksum: true, raw_data: true, client_id: 'e2e-hand-made', parameters, streams }),
      signal: controller.signal,
    });
    if (res.status !== 200) return { status: res.status, body: await res.text(), ops: [], buckets: [] };
    const decoder = new TextDecoder();
    const reader = res.body.getReader();
    let buffer = '';
    const ops = [];
    let buckets = [];
    try {
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let nl;
        while ((nl = buffer.indexOf('\n')) >= 0) {
          const line = buffer.slice(0, nl).trim();
          buffer = buffer.slice(nl + 1);
          if (!line) continue;
          const msg = JSON.parse(line);
          if (msg.checkpoint) buckets = msg.checkpoint.buckets.map((b) => b.bucket);
          if (msg.data) for (const op of msg.data.data) ops.push({ bucket: msg.data.bucket, ...op });
          if (msg.checkpoint_complete) return { status: 200, ops, buckets };
        }
      }
    } finally {
      await reader.cancel().catch(() => {});
    }
    throw new Error('the sync stream ended before checkpoint_complete');
  } finally {
    clearTimeout(timer);
    controller.abort();
  }
}

/**
 * The lines of an NDJSON sync stream opened as `token` (raw data, no buckets known), each with
 * the `performance.now()` at which its chunk arrived. Ends with the stream; aborted by `signal`.
 */
export async function* syncStreamLines(serviceUrl, token, { streams, clientId, signal } = {}) {
  const res = await fetch(`${serviceUrl}/sync/stream`, {
    method: 'POST',
    headers: { Authorization: `Token ${token}`, 'Content-Type': 'application/json', Accept: 'application/x-ndjson' },
    body: JSON.stringify({ buckets: [], include_checksum: true, raw_data: true, client_id: clientId, streams }),
    signal,
  });
  if (res.status !== 200) throw new Error(`sync stream: HTTP ${res.status}`);
  const decoder = new TextDecoder();
  let buffer = '';
  for await (const chunk of res.body) {
    const at = performance.now();
    buffer += decoder.decode(chunk, { stream: true });
    let nl;
    while ((nl = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, nl).trim();
      buffer = buffer.slice(nl + 1);
      if (line) yield { msg: JSON.parse(line), at };
    }
  }
}

/**
 * Opens the NDJSON sync stream as `token` and resolves (with the time it arrived) once a `data`
 * op satisfies `predicate`. `close()` ends the stream. For timing the service apart from the SDK.
 */
export function watchSyncStream(serviceUrl, token, predicate, { streams } = {}) {
  const controller = new AbortController();
  const seen = (async () => {
    const lines = syncStreamLines(serviceUrl, token, { streams, clientId: 'e2e-watch', signal: controller.signal });
    for await (const { msg, at } of lines) {
      if (msg.data && msg.data.data.some(predicate)) return at;
    }
    throw new Error('the sync stream ended');
  })();
  seen.catch(() => {});
  return { seen, close: () => controller.abort() };
}
