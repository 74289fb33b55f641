// The local database and its connection to the backend.
//
// Every write goes to the local SQLite database first (so it shows at once, online or not) and
// into the SDK's upload queue. The connector below sends that queue to the app's process
// (POST /api/sync), which applies it to Postgres; the sync service then streams the result back to
// every device that may see it. Conflicts are resolved on the server (last write wins by default;
// see the merge policy module in ../server).
import {
  type AbstractPowerSyncDatabase,
  type CrudEntry,
  type PowerSyncBackendConnector,
  type PowerSyncCredentials,
  PowerSyncDatabase,
  type SyncStatus,
  UpdateType,
} from '@powersync/web';
import { readApiError, type User } from './api';
import { recordRejection } from './rejections';
import { AppSchema } from './schema';

/** The sync service the browser streams from (set at build time; never a database URL). */
const POWERSYNC_URL = import.meta.env.VITE_POWERSYNC_URL;
/** Where sync tokens come from: the app's process, same origin, authenticated by the session cookie. */
const TOKEN_ENDPOINT = import.meta.env.VITE_POWERSYNC_TOKEN_ENDPOINT ?? '/api/powersync/token';
const UPLOAD_ENDPOINT = '/api/sync';

export class BackendConnector implements PowerSyncBackendConnector {
  private closed = false;
  private readonly wakeUp = new Set<() => void>();

  /** `onSessionEnded` runs when the server says the session is gone (expired or signed out elsewhere). */
  constructor(private readonly onSessionEnded: () => void) {}

  async fetchCredentials(): Promise<PowerSyncCredentials | null> {
    if (!POWERSYNC_URL) throw new Error('VITE_POWERSYNC_URL was not set when the UI was built');
    await this.whenOnline();
    const res = await fetch(TOKEN_ENDPOINT, { credentials: 'include' });
    if (res.status === 401) {
      this.onSessionEnded();
      return null;
    }
    if (!res.ok) throw await readApiError(res);
    const { token } = (await res.json()) as { token: string };
    return { endpoint: POWERSYNC_URL, token };
  }

  async uploadData(db: AbstractPowerSyncDatabase): Promise<void> {
    for (;;) {
      // One local transaction (e.g. a list and all its todos) = one request = one Postgres transaction.
      const transaction = await db.getNextCrudTransaction();
      if (!transaction) return;
      await this.whenOnline();
      // A network error throws here: the SDK keeps the queue and retries.
      const res = await fetch(UPLOAD_ENDPOINT, {
        method: 'POST',
        credentials: 'include',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ batch: transaction.crud }),
      });
      if (res.ok) {
        await transaction.complete();
        continue;
      }
      if (isPermanentRejection(res.status)) {
        // The server will never accept this change (not allowed, invalid). Tell the user and drop it
        // from the queue so the changes after it can still go through; the next sync brings the
        // server's version of the rows back.
        const error = await readApiError(res);
        recordRejection(describeChanges(transaction.crud), error.message);
        await transaction.complete();
        continue;
      }
      if (res.status === 401) this.onSessionEnded();
      // 5xx, 401, 408, 429: temporary. Throwing keeps the transaction queued; the SDK retries.
      throw await readApiError(res);
    }
  }

  /** Ends pending waits (used when the database is closed). */
  close() {
    this.closed = true;
    for (const wake of this.wakeUp) wake();
  }

  /**
   * Resolves once the browser is online. While it is offline, requests would only fail (and be
   * retried on a timer); waiting instead means the queue goes out the moment the network returns.
   */
  private whenOnline(): Promise<void> {
    if (this.closed || navigator.onLine) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        window.removeEventListener('online', done);
        this.wakeUp.delete(done);
        resolve();
      };
      window.addEventListener('online', done);
      this.wakeUp.add(done);
    });
  }
}

function isPermanentRejection(status: number) {
  return status >= 400 && status < 500 && status !== 401 && status !== 408 && status !== 429;
}

const NOUNS: Record<string, string> = { lists: 'list', todos: 'todo', list_members: 'list member' };

/** The changes of one upload in words, for the rejection banner: "add todo “milk”, delete list". */
export function describeChanges(entries: readonly CrudEntry[]): string {
  return entries
    .map((e) => {
      const noun = NOUNS[e.table] ?? e.table;
      const data = e.opData ?? {};
      const label =
        typeof data.name === 'string' ? data.name : typeof data.description === 'string' ? data.description : null;
      const named = label ? ` “${label}”` : '';
      switch (e.op) {
        case UpdateType.PUT:
          return e.table === 'list_members' ? `share with ${data.username ?? 'a user'}` : `add ${noun}${named}`;
        case UpdateType.PATCH:
          if (e.table === 'todos' && 'completed' in data && !('description' in data)) {
            return `${data.completed ? 'complete' : 'reopen'} todo`;
          }
          return `edit ${noun}${named}`;
        case UpdateType.DELETE:
          return e.table === 'list_members' ? 'remove a member' : `delete ${noun}`;
        default:
          return `${e.op} ${noun}`;
      }
    })
    .join(', ');
}

export interface OpenDatabase {
  db: PowerSyncDatabase;
  connector: BackendConnector;
}

/**
 * Opens the local database of `user` and starts syncing it. Each user gets a database of their own
 * (named after their id), so one user's local rows are never shown to the next one who signs in
 * on the same browser.
 */
export function openDatabase(user: User, onSessionEnded: () => void): OpenDatabase {
  const db = new PowerSyncDatabase({
    schema: AppSchema,
    database: { dbFilename: `realtime-app-${user.id}.sqlite` },
  });
  if (import.meta.env.VITE_POWERSYNC_EXPOSE_DB === 'true') window.powersyncDb = db;
  const connector = new BackendConnector(onSessionEnded);
  // Connecting returns at once; syncing and uploading go on in the background, with retries.
  // Uploads start at most 100 ms apart (default: 1 s) so collaborators see changes quickly.
  db.connect(connector, { retryDelayMs: 2000, crudUploadThrottleMs: 100 }).catch((e: unknown) => {
    console.warn('could not start syncing', e);
  });
  return { db, connector };
}

/** Signing out: stop syncing and delete this user's local data from the browser. */
export async function closeDatabase({ db, connector }: OpenDatabase, { clear }: { clear: boolean }) {
  connector.close();
  if (clear) await db.disconnectAndClear();
  await db.close();
}

/** The stream of one list's todos (sync-rules.yaml), subscribed while the list is open. */
export const LIST_TODOS_STREAM = 'list_todos';
/**
 * How long a list's todos stay on the device after it was last open (seconds): within it they
 * are there offline and keep syncing in the background; after it the SDK drops them.
 */
export const LIST_TODOS_TTL_SECONDS = 7 * 24 * 60 * 60;

/**
 * Where one list's todos stand on this device: never opened (or its TTL ran out), downloading,
 * or on the device (synced while open, kept and synced in the background within the TTL).
 */
export type ListSyncState = 'not-downloaded' | 'syncing' | 'synced';

/** The state of `listId`'s todos from the SDK's per-subscription status. */
export function listSyncState(status: SyncStatus, listId: string): ListSyncState {
  const stream = status.syncStreams?.find(
    (s) => s.subscription.name === LIST_TODOS_STREAM && s.subscription.parameters?.list_id === listId,
  );
  if (!stream) return 'not-downloaded';
  return stream.subscription.hasSynced ? 'synced' : 'syncing';
}
