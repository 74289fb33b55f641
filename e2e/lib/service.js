// Starting, stopping and killing the service under test (`riptide serve --config FILE`).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import { RIPTIDE_BIN } from './env.js';
import { GiveUp, waitFor, withDeadline } from './wait.js';

/** A TCP port that was free a moment ago. */
export async function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const indent = (text, n) =>
  text
    .split('\n')
    .map((l) => (l.length ? ' '.repeat(n) + l : l))
    .join('\n');

/**
 * powersync.yaml text for one test. `extra` is appended verbatim (top-level YAML). `rules: null`
 * leaves out `sync_config`: rules are then deployed through the admin API. `connectionExtra` is
 * appended to the source connection (e.g. `debug_api: true`).
 */
export function serviceConfig({
  sourceUrl,
  storageUrl,
  port,
  jwks,
  rules,
  audience = ['riptide-e2e'],
  extra = '',
  connectionExtra = '',
}) {
  const syncConfig =
    rules == null
      ? ''
      : `sync_config:
  content: |
${indent(rules.trimEnd(), 4)}
`;
  return `replication:
  connections:
    - type: postgresql
      uri: ${sourceUrl}
      sslmode: disable
${connectionExtra ? `      ${connectionExtra}\n` : ''}storage:
  type: postgresql
  uri: ${storageUrl}
  sslmode: disable
port: ${port}
${syncConfig}client_auth:
  jwks:
    keys: ${JSON.stringify(jwks)}
  audience: ${JSON.stringify(audience)}
system:
  logging: { level: info, format: text }
${extra}`;
}

/** A running (or exited) service process with its captured output. */
export class Service {
  /** `args`: more `riptide serve` arguments (e.g. `['--role', 'api']`). */
  constructor({ configPath, port, logPath, args = [] }) {
    this.configPath = configPath;
    this.args = args;
    this.port = port;
    this.logPath = logPath;
    this.endpoint = `http://127.0.0.1:${port}`;
    this.output = [];
    this.outputBytes = 0;
    this.generation = 0;
    this.proc = null;
    this.exit = null;
  }

  /** Spawns the process (again, after a kill: same config, same port). */
  spawn() {
    this.generation += 1;
    this.exit = null;
    this._append(`----- riptide serve (start #${this.generation}) -----\n`);
    const proc = spawn(RIPTIDE_BIN, ['serve', '--config', this.configPath, ...this.args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, RUST_BACKTRACE: '1' },
    });
    this.proc = proc;
    proc.stdout.on('data', (d) => this._append(d.toString()));
    proc.stderr.on('data', (d) => this._append(d.toString()));
    this.exited = new Promise((resolve) => {
      proc.on('error', (err) => {
        this._append(`spawn error: ${err.message}\n`);
        this.exit = { code: null, signal: null, error: err };
        resolve(this.exit);
      });
      proc.on('exit', (code, signal) => {
        this._append(`----- process exited: code=${code} signal=${signal} -----\n`);
        this.exit = { code, signal };
        resolve(this.exit);
      });
    });
    return this;
  }

  _append(text) {
    this.output.push(text);
    this.outputBytes += text.length;
    if (this.logPath) fs.appendFileSync(this.logPath, text);
    while (this.outputBytes > 4_000_000 && this.output.length > 1) {
      this.outputBytes -= this.output.shift().length;
    }
  }

  /** Everything the process printed (stdout and stderr, all starts). */
  logs() {
    return this.output.join('');
  }

  tail(lines = 150) {
    return this.logs().split('\n').slice(-lines).join('\n');
  }

  /** Polls GET /probes/readiness until 200; fails early if the process exits. */
  async waitReady(timeoutMs = 60_000) {
    await waitFor(
      async () => {
        if (this.exit) throw new GiveUp(`service exited before it was ready: ${JSON.stringify(this.exit)}`);
        const res = await fetch(`${this.endpoint}/probes/readiness`, { signal: AbortSignal.timeout(2000) });
        await res.arrayBuffer();
        return res.status === 200;
      },
      { timeoutMs, intervalMs: 100, what: `GET ${this.endpoint}/probes/readiness = 200` },
    );
    return this;
  }

  /** SIGKILL, and wait until the process is gone. */
  async kill(signal = 'SIGKILL') {
    if (!this.proc || this.exit) return this.exit;
    this.proc.kill(signal);
    return withDeadline(this.exited, 15_000, `service to exit after ${signal}`);
  }

  /** SIGTERM, then SIGKILL if it does not exit within `graceMs`. */
  async stop(graceMs = 5000) {
    if (!this.proc || this.exit) return this.exit;
    this.proc.kill('SIGTERM');
    try {
      return await withDeadline(this.exited, graceMs, 'service to exit after SIGTERM');
    } catch {
      return this.kill('SIGKILL');
    }
  }
}
