// Benchmark helper for `riptide-bench --scenario token-refresh`: one @powersync/node client
// whose first token expires 5 s after it is fetched, later ones in an hour, while a writer
// commits an `events` row of TOPIC every INTERVAL_MS for SECONDS. Each row's latency is the
// time from its commit to its arrival in the client's SQLite; the longest shows what the
// token's expiry cost. Tokens are signed here when the SDK asks (SIGNING_KEY: the Ed25519
// private key as base64 PKCS#8 DER, KID, AUDIENCE), so the first one's lifetime counts from
// the connect. Reads ENDPOINT, SOURCE_URL, CONNECTION_METHOD and RETRY_DELAY_MS (the SDK's
// retryDelayMs; its default 5000). Prints {"latencies_ms": [...], "token_fetches_ms": [ms after
// connect of each credentials fetch]}.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { importPKCS8, SignJWT } from 'jose';
import pg from 'pg';
import { PowerSyncDatabase, Schema, Table, column } from '@powersync/node';

const topic = process.env.TOPIC ?? 'token-refresh';
const seconds = Number(process.env.SECONDS ?? 10);
const intervalMs = Number(process.env.INTERVAL_MS ?? 20);
const retryDelayMs = Number(process.env.RETRY_DELAY_MS ?? 5000);
const connectionMethod = process.env.CONNECTION_METHOD ?? 'http';
const schema = new Schema({
  events: new Table({ topic: column.text, seq: column.integer, sent_us: column.integer }),
});
const nowUs = () => Math.round((performance.timeOrigin + performance.now()) * 1000);
const der = process.env.SIGNING_KEY ?? '';
const pem = `-----BEGIN PRIVATE KEY-----\n${der.match(/.{1,64}/g).join('\n')}\n-----END PRIVATE KEY-----`;
const key = await importPKCS8(pem, 'EdDSA');
const token = (ttlSecs) =>
  new SignJWT({ parameters: { topic } })
    .setProtectedHeader({ alg: 'EdDSA', kid: process.env.KID })
    .setSubject('bench')
    .setAudience(process.env.AUDIENCE)
    .setIssuedAt()
    .setExpirationTime(Math.floor(Date.now() / 1000) + ttlSecs)
    .sign(key);
const source = new pg.Client({ connectionString: process.env.SOURCE_URL });
await source.connect();
await source.query('SET synchronous_commit = on');

const dir = await mkdtemp(path.join(os.tmpdir(), 'riptide-bench-token-'));
const db = new PowerSyncDatabase({ schema, database: { dbFilename: 'client.db', dbLocation: dir } });
await db.init();
const started = performance.now();
const fetches = [];
await db.connect(
  {
    fetchCredentials: async () => {
      fetches.push(Math.round(performance.now() - started));
      return { endpoint: process.env.ENDPOINT, token: await token(fetches.length === 1 ? 5 : 3600) };
    },
    uploadData: async () => {},
  },
  { connectionMethod, retryDelayMs },
);
await db.waitForFirstSync();

const latencies = [];
let last = 0;
let busy = false;
let again = false;
const check = async () => {
  const seenAt = nowUs();
  const rows = await db.getAll('SELECT seq, sent_us FROM events WHERE topic = ? AND seq > ? ORDER BY seq', [topic, last]);
  for (const r of rows) {
    latencies.push((seenAt - Number(r.sent_us)) / 1000);
    last = Math.max(last, Number(r.seq));
  }
};
db.onChange(
  {
    onChange: async () => {
      if (busy) {
        again = true;
        return;
      }
      busy = true;
      try {
        do {
          again = false;
          await check();
        } while (again);
      } finally {
        busy = false;
      }
    },
  },
  { tables: ['events'], throttleMs: 0 },
);

const writes = Math.round((seconds * 1000) / intervalMs);
for (let seq = 1; seq <= writes; seq++) {
  await source.query('INSERT INTO events (id, topic, seq, sent_us) VALUES ($1, $2, $3, $4)', [
    `${topic}-${process.pid}-${seq}`,
    topic,
    seq,
    nowUs(),
  ]);
  await new Promise((resolve) => setTimeout(resolve, intervalMs));
}
const deadline = Date.now() + 15_000;
while (latencies.length < writes && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
console.log(JSON.stringify({ writes, latencies_ms: latencies, token_fetches_ms: fetches }));
await db.disconnect();
await db.close();
await source.end();
await rm(dir, { recursive: true, force: true });
process.exit(0);
