// Benchmark helper for `riptide-bench`: one @powersync/node first sync into a fresh database.
// Reads ENDPOINT, TOKEN and CONNECTION_METHOD ('http', the default, or 'web-socket'), syncs the
// `items` table, prints {"rows": N, "seconds": S, "connectionMethod": M}.
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { PowerSyncDatabase, Schema, SyncStreamConnectionMethod, Table, column } from '@powersync/node';

const connectionMethod = process.env.CONNECTION_METHOD ?? 'http';
if (!Object.values(SyncStreamConnectionMethod).includes(connectionMethod)) {
  throw new Error(`CONNECTION_METHOD must be one of ${Object.values(SyncStreamConnectionMethod).join(', ')}`);
}
const schema = new Schema({
  items: new Table({ n: column.integer, label: column.text, created_at: column.text }),
});
const dir = await mkdtemp(path.join(os.tmpdir(), 'riptide-bench-node-'));
const db = new PowerSyncDatabase({ schema, database: { dbFilename: 'bench.db', dbLocation: dir } });
await db.init();
const started = performance.now();
await db.connect({
  fetchCredentials: async () => ({ endpoint: process.env.ENDPOINT, token: process.env.TOKEN }),
  uploadData: async () => {},
}, { connectionMethod });
await db.waitForFirstSync();
const seconds = (performance.now() - started) / 1000;
const { c: rows } = await db.get('SELECT count(*) AS c FROM items');
console.log(JSON.stringify({ rows, seconds, connectionMethod }));
await db.disconnect();
await db.close();
await rm(dir, { recursive: true, force: true });
