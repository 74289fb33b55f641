// One test = fresh databases + its own service process + its own client files, all cleaned up,
// with the service output and client logs attached to the failure message.
import { test } from 'node:test';
import { scratchDir } from './env.js';
import { generateKey, signToken } from './auth.js';
import { createTestDatabases } from './postgres.js';
import fs from 'node:fs';
import path from 'node:path';
import { freePort, serviceConfig, Service } from './service.js';
import { openClient } from './client.js';

export class E2eContext {
  constructor(name, t) {
    this.name = name;
    this.t = t;
    this.slug = name.toLowerCase().replace(/[^a-z0-9]+/g, '_').slice(0, 20);
    this.dir = scratchDir(this.slug);
    this.key = generateKey();
    this.services = [];
    this.clients = [];
    this.dbs = null;
  }

  /** Fresh source (with the demo schema) and storage databases. */
  async databases() {
    if (!this.dbs) this.dbs = await createTestDatabases(this.slug);
    return this.dbs;
  }

  /** powersync.yaml text for this test's databases and key. */
  async config({ rules, port, extra, audience, jwks, connectionExtra } = {}) {
    const dbs = await this.databases();
    return serviceConfig({
      sourceUrl: dbs.sourceUrl,
      storageUrl: dbs.storageUrl,
      port,
      jwks: jwks ?? [this.key.jwk],
      rules,
      extra,
      audience,
      connectionExtra,
    });
  }

  /** Starts the service with `rules` and waits for readiness (unless `waitReady: false`). */
  async startService({ rules, readyTimeoutMs = 60_000, waitReady = true, extra, connectionExtra } = {}) {
    const port = await freePort();
    const configYaml = await this.config({ rules, port, extra, connectionExtra });
    const n = this.services.length + 1;
    const configPath = path.join(this.dir, `powersync-${n}.yaml`);
    fs.writeFileSync(configPath, configYaml);
    const service = new Service({ configPath, port, logPath: path.join(this.dir, `service-${n}.log`) });
    this.services.push(service);
    service.spawn();
    if (waitReady) await service.waitReady(readyTimeoutMs);
    return service;
  }

  token(sub, claims = {}) {
    return signToken(this.key, { sub, ...claims });
  }

  /** A fresh @powersync/node database for user `sub`, not yet connected. */
  async client(name, sub, service, options = {}) {
    const dbs = await this.databases();
    const client = await openClient({
      dir: this.dir,
      name,
      endpoint: service.endpoint,
      getToken: () => this.token(sub),
      sourcePool: dbs.source,
      ...options,
    });
    this.clients.push(client);
    return client;
  }

  diagnostics() {
    const parts = [`scratch dir: ${this.dir}`];
    for (const s of this.services) parts.push(`--- service output (tail) ---\n${s.tail(200)}`);
    for (const c of this.clients) parts.push(`--- client ${c.name} SDK log (tail) ---\n${c.logger.tail()}`);
    return parts.join('\n');
  }

  async cleanup() {
    const errors = [];
    for (const c of this.clients) {
      try {
        await c.db.close();
      } catch (e) {
        errors.push(e);
      }
    }
    for (const s of this.services) {
      if (s.stop) await s.stop(3000).catch((e) => errors.push(e));
    }
    if (this.dbs) await this.dbs.drop().catch((e) => errors.push(e));
    return errors;
  }
}

/** `node:test` test with an {@link E2eContext}. */
export function e2eTest(name, fn, options = {}) {
  return test(name, { timeout: 240_000, ...options }, async (t) => {
    const ctx = new E2eContext(name, t);
    let failed = false;
    try {
      await fn(ctx, t);
    } catch (e) {
      failed = true;
      if (e && typeof e === 'object') {
        try {
          e.message = `${e.message}\n\n${ctx.diagnostics()}`;
        } catch {
          // read-only message (rare); the diagnostics still go to stderr below
          console.error(ctx.diagnostics());
        }
      }
      throw e;
    } finally {
      const errors = await ctx.cleanup();
      if (errors.length && !failed) throw new AggregateError(errors, 'cleanup failed');
      // Keep configs, logs and client files of failed tests only.
      if (!failed && !errors.length) fs.rmSync(ctx.dir, { recursive: true, force: true });
    }
  });
}
