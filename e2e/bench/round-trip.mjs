// Benchmark helper for `riptide-bench --scenario node-latency`: one @powersync/node client's
// own writes, each timed from the local insert until the server's version of the row is back
// in its local SQLite. Reads ENDPOINT, TOKEN, SOURCE_URL (the source database the upload
// handler writes to), TOPIC, CONNECTION_METHOD ('http' or 'web-socket'), COUNT and
// CRUD_THROTTLE_MS (the SDK's crudUploadThrottleMs, default 0).
//
// The upload handler (this script's connector) writes each row with its `seq` negated, as a
// server would write its own version: the local row shows a positive `seq` only once the
// server's version came back through the sync stream, which the SDK applies only after the
// checkpoint that carries the write checkpoint of the upload. One write at a time, 20-50 ms
// apart (random, so nothing periodic lines up with them). Prints one JSON line: per write, the
// milliseconds from the local insert to the insert returning (`local`), the upload handler
// being called (`upload_start`), the upload committed (`upload_done`) and the server's version
// in SQLite (`back`).
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { PowerSyncDatabase, Schema, SyncStreamConnectionMethod, Table, column } from '@powersync/node';

const connectionMethod = process.env.CONNECTION_METHOD ?? 'http';
if (!Object.values(SyncStreamConnectionMethod).includes(connectionMethod)) {
  throw new Error(`CONNECTION_METHOD must be one of ${Object.values(SyncStreamConnectionMethod).join(', ')}`);
}
const count = Number(process.env.COUNT ?? 20);
const topic = process.env.TOPIC ?? 'roundtrip';
const throttle = Number(process.env.CRUD_THROTTLE_MS ?? 0);
const schema = new Schema({
  events: new Table({ topic: column.text, seq: column.integer, sent_us: column.integer }),
});
const source = new pg.Client({ connectionString: process.env.SOURCE_URL });
await source.connect();
// As a production database commits (the bench cluster's default is off).
await source.query('SET synchronous_commit = on');

const dir = await mkdtemp(path.join(os.tmpdir(), 'riptide-bench-round-trip-'));
const db = new PowerSyncDatabase({ schema, database: { dbFilename: 'client.db', dbLocation: dir } });
await db.init();

/** The timings of the write in flight (ms since its local insert started). */
let current = null;
const now = () => performance.now();

await db.connect(
  {
    fetchCredentials: async () => ({ endpoint: process.env.ENDPOINT, token: process.env.TOKEN }),
    uploadData: async (database) => {
      for (;;) {
        const tx = await database.getNextCrudTransaction();
        if (!tx) return;
        if (current && current.upload_start === undefined) current.upload_start = now() - current.t0;
        await source.query('BEGIN');
        try {
          for (const e of tx.crud) {
            const d = e.opData ?? {};
            await source.query(
              'INSERT INTO events (id, topic, seq, sent_us) VALUES ($1, $2, $3, $4) ' +
                'ON CONFLICT (id) DO UPDATE SET seq = EXCLUDED.seq',
              [e.id, d.topic, -Number(d.seq), d.sent_us],
            );
          }
          await source.query('COMMIT');
        } catch (err) {
          await source.query('ROLLBACK').catch(() => {});
          throw err;
        }
        await tx.complete();
        if (current && current.upload_done === undefined) current.upload_done = now() - current.t0;
      }
    },
  },
  { connectionMethod, crudUploadThrottleMs: throttle },
);
await db.waitForFirstSync();

const samples = [];
let settle = null;
db.onChange(
  {
    onChange: async () => {
      if (!current || !settle) return;
      const seenAt = now();
      const row = await db.getOptional('SELECT seq FROM events WHERE id = ?', [current.id]);
      if (row && Number(row.seq) > 0 && settle) {
        current.back = seenAt - current.t0;
        const done = settle;
        settle = null;
        done();
      }
    },
  },
  { tables: ['events'], throttleMs: 0 },
);

for (let seq = 1; seq <= count; seq++) {
  await new Promise((resolve) => setTimeout(resolve, 20 + Math.random() * 30));
  const id = `${topic}-${connectionMethod}-${process.pid}-${seq}`;
  const back = new Promise((resolve) => (settle = resolve));
  current = { id, t0: now() };
  // Negative locally; the server's version is positive.
  await db.execute('INSERT INTO events (id, topic, seq, sent_us) VALUES (?, ?, ?, ?)', [id, topic, -seq, Date.now() * 1000]);
  current.local = now() - current.t0;
  const timeout = new Promise((_, reject) =>
    setTimeout(() => reject(new Error(`write ${seq} not back after 10 s (${JSON.stringify(current)})`)), 10_000),
  );
  await Promise.race([back, timeout]);
  const { id: _, t0: __, ...timings } = current;
  samples.push(timings);
}
console.log(JSON.stringify({ connectionMethod, samples }));
await db.disconnect();
await db.close();
await source.end();
await rm(dir, { recursive: true, force: true });
process.exit(0);
