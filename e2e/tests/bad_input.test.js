// Bad input: tokens and bodies the service must reject with PowerSync's status and error codes,
// and configs that must stop start-up with a message naming the problem and its line.
import assert from 'node:assert/strict';
import path from 'node:path';
import fs from 'node:fs';
import { e2eTest } from '../lib/harness.js';
import { PER_USER_RULES } from '../lib/rules.js';
import { generateKey, signToken, unsignedToken, AUDIENCE } from '../lib/auth.js';
import { freePort, Service } from '../lib/service.js';
import { withDeadline } from '../lib/wait.js';

const SYNC_BODY = JSON.stringify({
  buckets: [],
  include_checksum: true,
  raw_data: true,
  binary_data: true,
  client_id: 'e2e-bad-input',
  parameters: {},
  streams: { include_defaults: true, subscriptions: [] },
});

/** POST /sync/stream; reads a JSON error body, or only the head of a stream. */
async function syncRequest(service, { authorization, body = SYNC_BODY } = {}) {
  const headers = { 'content-type': 'application/json', accept: 'application/x-ndjson' };
  if (authorization !== undefined) headers.authorization = authorization;
  const controller = new AbortController();
  const res = await fetch(`${service.endpoint}/sync/stream`, { method: 'POST', headers, body, signal: controller.signal });
  return readResponse(res, controller);
}

async function readResponse(res, controller) {
  const contentType = res.headers.get('content-type') ?? '';
  if (res.status === 200) {
    // A stream: read the first chunk only.
    const reader = res.body.getReader();
    const first = await withDeadline(reader.read(), 10_000, 'the first chunk of the sync stream');
    controller?.abort();
    return { status: res.status, contentType, firstChunk: Buffer.from(first.value ?? []).toString('utf8') };
  }
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, contentType, text, json, code: json?.error?.code };
}

const now = () => Math.floor(Date.now() / 1000);

e2eTest('bad input is rejected', async (ctx, t) => {
  const service = await ctx.startService({ rules: PER_USER_RULES });
  const otherKeySameKid = generateKey(ctx.key.kid);

  const check = (name, fn) =>
    t.test(name, async () => {
      try {
        await fn();
      } catch (e) {
        e.message += `\n--- service output (tail) ---\n${service.tail(40)}`;
        throw e;
      }
    });

  const expectAuthError = (res, codes, what) => {
    const detail = `${what}: got ${res.status} ${res.text ?? res.firstChunk}`;
    assert.equal(res.status, 401, detail);
    assert.match(res.contentType, /application\/json/, detail);
    assert.ok(codes.includes(res.code), `${detail}; expected code ${codes.join(' or ')}`);
    assert.equal(res.json.error.status, 401, detail);
  };

  await check('a valid token opens the stream (control)', async () => {
    const res = await syncRequest(service, { authorization: `Token ${await ctx.token('u1')}` });
    assert.equal(res.status, 200, res.text);
    assert.match(res.contentType, /application\/(x-ndjson|vnd\.powersync\.bson-stream)/);
  });
  await check('missing token → 401 PSYNC_S2106', async () => {
    expectAuthError(await syncRequest(service, {}), ['PSYNC_S2106'], 'no Authorization header');
  });
  await check('garbage token → 401', async () => {
    const res = await syncRequest(service, { authorization: 'Token not-a-jwt' });
    expectAuthError(res, ['PSYNC_S2101', 'PSYNC_S2102', 'PSYNC_S2106'], 'garbage token');
  });
  await check('expired token → 401 PSYNC_S2103', async () => {
    const token = await signToken(ctx.key, { sub: 'u1', iat: now() - 7200, exp: now() - 3600 });
    expectAuthError(await syncRequest(service, { authorization: `Token ${token}` }), ['PSYNC_S2103'], 'expired token');
  });
  await check('wrong audience → 401 PSYNC_S2105', async () => {
    const token = await signToken(ctx.key, { sub: 'u1', aud: 'someone-else' });
    expectAuthError(await syncRequest(service, { authorization: `Bearer ${token}` }), ['PSYNC_S2105'], 'wrong aud');
  });
  await check('missing audience → 401 PSYNC_S2105', async () => {
    const token = await signToken(ctx.key, { sub: 'u1', aud: undefined });
    expectAuthError(await syncRequest(service, { authorization: `Token ${token}` }), ['PSYNC_S2105'], 'no aud');
  });
  await check('lifetime over one day → 401 PSYNC_S2104', async () => {
    const token = await signToken(ctx.key, { sub: 'u1', iat: now(), exp: now() + 3 * 86_400 });
    expectAuthError(await syncRequest(service, { authorization: `Token ${token}` }), ['PSYNC_S2104'], 'exp - iat > 1 day');
  });
  await check('signed by another key with the same kid → 401 PSYNC_S2101/S2102', async () => {
    const token = await signToken(otherKeySameKid, { sub: 'u1' });
    expectAuthError(
      await syncRequest(service, { authorization: `Token ${token}` }),
      ['PSYNC_S2101', 'PSYNC_S2102'],
      'wrong signature',
    );
  });
  await check('alg none → 401', async () => {
    const res = await syncRequest(service, { authorization: `Token ${unsignedToken({ sub: 'u1', aud: AUDIENCE })}` });
    expectAuthError(res, ['PSYNC_S2101', 'PSYNC_S2102'], 'alg none');
  });
  await check('write-checkpoint2.json without a token → 401 PSYNC_S2106', async () => {
    const res = await fetch(`${service.endpoint}/write-checkpoint2.json?client_id=x`);
    expectAuthError(await readResponse(res), ['PSYNC_S2106'], 'write checkpoint without token');
  });
  await check('malformed JSON body → 400', async () => {
    const res = await syncRequest(service, { authorization: `Token ${await ctx.token('u1')}`, body: '{"buckets": [' });
    assert.equal(res.status, 400, `got ${res.status} ${res.text ?? res.firstChunk}`);
    assert.match(res.json?.error?.code ?? '', /^PSYNC_S2\d{3}$/, `error body: ${res.text}`);
  });
  await check('wrongly typed body → 400', async () => {
    const res = await syncRequest(service, {
      authorization: `Token ${await ctx.token('u1')}`,
      body: JSON.stringify({ buckets: 'all of them' }),
    });
    assert.equal(res.status, 400, `got ${res.status} ${res.text ?? res.firstChunk}`);
  });
  // The service is still healthy after all of that.
  await check('still serving afterwards', async () => {
    const res = await syncRequest(service, { authorization: `Token ${await ctx.token('u1')}` });
    assert.equal(res.status, 200, res.text);
    assert.equal(service.exit, null, 'service process exited');
  });
});

/** Starts the service on `configYaml` and expects it to exit non-zero on its own. */
async function expectStartupFailure(ctx, name, configYaml) {
  const dir = path.join(ctx.dir, name);
  fs.mkdirSync(dir, { recursive: true });
  const configPath = path.join(dir, 'powersync.yaml');
  fs.writeFileSync(configPath, configYaml);
  const service = new Service({ configPath, port: 0, logPath: path.join(dir, 'service.log') });
  ctx.services.push(service);
  service.spawn();
  const exit = await withDeadline(service.exited, 30_000, `riptide to exit on the bad config (${name})`).catch(
    async (e) => {
      await service.kill();
      throw new Error(`${e.message}\n${service.tail(40)}`);
    },
  );
  return { exit, output: service.logs() };
}

/** 1-based line of the first line of `text` containing `needle`. */
const lineOf = (text, needle) => text.split('\n').findIndex((l) => l.includes(needle)) + 1;

e2eTest('invalid configs stop start-up with located errors', async (ctx, t) => {
  const port = await freePort();
  const cases = [
    {
      name: 'sync rules with a SQL syntax error',
      rules: PER_USER_RULES.replace('- SELECT * FROM todos', '- SELEC * FROM todos'),
      needle: 'SELEC * FROM todos',
      mention: /SELEC|syntax|expected/i,
    },
    {
      name: 'sync rules using an unknown bucket parameter',
      rules: PER_USER_RULES.replace('created_by = bucket.user_id', 'created_by = bucket.nobody'),
      needle: 'bucket.nobody',
      mention: /nobody/,
    },
  ];
  for (const c of cases) {
    await t.test(c.name, async () => {
      const configYaml = await ctx.config({ rules: c.rules, port });
      const { exit, output } = await expectStartupFailure(ctx, c.name.replace(/\W+/g, '_'), configYaml);
      assert.notEqual(exit.code, 0, `exit ${JSON.stringify(exit)}; output:\n${output}`);
      assert.equal(exit.signal, null, `killed by a signal (crash?): ${JSON.stringify(exit)}\n${output}`);
      const ruleLine = lineOf(c.rules, c.needle);
      const fileLine = lineOf(configYaml, c.needle);
      assert.match(output, new RegExp(`line\\D{0,3}(${ruleLine}|${fileLine})\\b`, 'i'),
        `the message should name line ${ruleLine} of the rules (line ${fileLine} of the file):\n${output}`);
      assert.match(output, c.mention, `the message should name the problem:\n${output}`);
    });
  }

  const badKeys = [
    { name: 'unknown top-level key', edit: (y) => y.replace('port:', 'colour: blue\nport:'), key: 'colour' },
    {
      name: 'unknown nested key',
      edit: (y) => y.replace('  type: postgresql\n  uri:', '  type: postgresql\n  max_pool_sizee: 4\n  uri:'),
      key: 'max_pool_sizee',
    },
  ];
  for (const c of badKeys) {
    await t.test(c.name, async () => {
      const configYaml = c.edit(await ctx.config({ rules: PER_USER_RULES, port }));
      assert.ok(configYaml.includes(c.key), 'test edit applied');
      const { exit, output } = await expectStartupFailure(ctx, c.name.replace(/\W+/g, '_'), configYaml);
      assert.notEqual(exit.code, 0, `exit ${JSON.stringify(exit)}; output:\n${output}`);
      assert.equal(exit.signal, null, `killed by a signal (crash?): ${JSON.stringify(exit)}\n${output}`);
      assert.ok(output.includes(c.key), `the message should name the key ${c.key}:\n${output}`);
      const line = lineOf(configYaml, c.key);
      assert.match(output, new RegExp(`line\\D{0,3}${line}\\b`, 'i'), `the message should name line ${line}:\n${output}`);
    });
  }
});
