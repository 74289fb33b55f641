// Test page for the e2e suite: the official @powersync/web SDK, driven from Node through
// `window.riptide`. Credentials and uploads go back to the test through functions it exposes on
// the page (`window.riptideFetchCredentials()`, `window.riptideUpload(entries)`), so the app
// backend of the test is the same Node code as for @powersync/node; only the sync traffic goes
// from the browser to the service (a different origin: CORS is exercised).
import { PowerSyncDatabase, Schema, Table, column, SyncStreamConnectionMethod } from '@powersync/web';

const schema = new Schema({
  lists: new Table({ name: column.text, owner_id: column.text, created_at: column.text }),
  todos: new Table({
    list_id: column.text,
    description: column.text,
    completed: column.integer,
    created_by: column.text,
    created_at: column.text,
  }),
  list_members: new Table({ list_id: column.text, user_id: column.text }),
});

const connector = {
  credentialRequests: 0,
  async fetchCredentials() {
    connector.credentialRequests += 1;
    return window.riptideFetchCredentials();
  },
  async uploadData(db) {
    for (;;) {
      const tx = await db.getNextCrudTransaction();
      if (!tx) return;
      await window.riptideUpload(tx.crud.map((e) => ({ op: e.op, table: e.table, id: e.id, opData: e.opData ?? null })));
      await tx.complete();
    }
  },
};

let db = null;

window.riptide = {
  /** Opens a fresh database (IndexedDB in a dedicated worker; the sync client on the page). */
  async open(dbFilename) {
    db = new PowerSyncDatabase({ schema, database: { dbFilename }, flags: { enableMultiTabs: false } });
    await db.init();
  },
  /** `connectionMethod`: 'http' or 'web-socket'. */
  async connect(connectionMethod) {
    const method = { http: SyncStreamConnectionMethod.HTTP, 'web-socket': SyncStreamConnectionMethod.WEB_SOCKET }[
      connectionMethod
    ];
    if (!method) throw new Error(`unknown connectionMethod ${connectionMethod}`);
    await db.connect(connector, { connectionMethod: method, retryDelayMs: 250, crudUploadThrottleMs: 50 });
  },
  async waitForFirstSync(timeoutMs) {
    const signal = AbortSignal.timeout(timeoutMs);
    await db.waitForFirstSync({ signal });
    if (!db.currentStatus.hasSynced) throw new Error(`no first sync within ${timeoutMs} ms`);
  },
  query: (sql, params = []) => db.getAll(sql, params),
  execute: async (sql, params = []) => {
    await db.execute(sql, params);
  },
  status: () => ({ ...JSON.parse(JSON.stringify(db.currentStatus.toJSON())), credentialRequests: connector.credentialRequests }),
  async close() {
    if (db) await db.close();
    db = null;
  },
};
document.getElementById('state').textContent = 'ready';
