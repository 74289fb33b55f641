// Benchmark helper for `riptide-bench --scenario node-latency`: CLIENTS @powersync/node databases
// in this process, each syncing the `events` rows of the token's topic over HTTP. Prints "ready"
// once every client has synced; then, for every event row that appears in a client's local
// SQLite, records now − sent_us (the writer's stamp, µs since the epoch, same machine clock).
// Ends after COUNT events on every client (or TIMEOUT_S seconds) and prints
// {"clients": N, "expected": E, "latencies_us": [...]} on one line.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { PowerSyncDatabase, Schema, Table, column } from '@powersync/node';

const clients = Number(process.env.CLIENTS ?? 20);
const count = Number(process.env.COUNT ?? 0);
const timeoutS = Number(process.env.TIMEOUT_S ?? 120);
const nowUs = () => Math.round((performance.timeOrigin + performance.now()) * 1000);
const schema = new Schema({
  events: new Table({ topic: column.text, seq: column.integer, sent_us: column.integer }),
});
const dir = await mkdtemp(path.join(os.tmpdir(), 'riptide-bench-node-live-'));
const latencies = [];
const dbs = [];
let resolveDone;
const done = new Promise((resolve) => {
  resolveDone = resolve;
});
let finished = 0;

for (let i = 0; i < clients; i++) {
  const db = new PowerSyncDatabase({ schema, database: { dbFilename: `client-${i}.db`, dbLocation: dir } });
  await db.init();
  await db.connect(
    {
      fetchCredentials: async () => ({ endpoint: process.env.ENDPOINT, token: process.env.TOKEN }),
      uploadData: async () => {},
    },
    { connectionMethod: 'http' },
  );
  dbs.push(db);
}
await Promise.all(dbs.map((db) => db.waitForFirstSync()));

for (const db of dbs) {
  let last = -1;
  let got = 0;
  let complete = false;
  let busy = false;
  let again = false;
  const check = async () => {
    // A change notification comes after the sync transaction committed: the rows are there.
    const seenAt = nowUs();
    const rows = await db.getAll('SELECT seq, sent_us FROM events WHERE seq > ? ORDER BY seq', [last]);
    for (const r of rows) {
      latencies.push(seenAt - Number(r.sent_us));
      last = Math.max(last, Number(r.seq));
      got++;
    }
    if (got >= count && !complete) {
      complete = true;
      finished++;
      if (finished === dbs.length) resolveDone();
    }
    return complete;
  };
  const onChange = async () => {
    if (busy) {
      again = true;
      return;
    }
    busy = true;
    try {
      let all = await check();
      while (again && !all) {
        again = false;
        all = await check();
      }
    } finally {
      busy = false;
    }
  };
  db.onChange({ onChange }, { tables: ['events'], throttleMs: 0 });
}
console.log('ready');

await Promise.race([done, new Promise((resolve) => setTimeout(resolve, timeoutS * 1000))]);
console.log(JSON.stringify({ clients, expected: clients * count, latencies_us: latencies }));
for (const db of dbs) {
  await db.disconnect();
  await db.close();
}
await rm(dir, { recursive: true, force: true });
process.exit(0);
