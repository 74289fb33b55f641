import { usePowerSync, useQuery, useStatus } from '@powersync/react';
import { type FormEvent, useState } from 'react';
import type { User } from '../lib/api';
import { listSyncState } from '../lib/powersync';
import { createList } from '../lib/writes';

interface ListRow {
  id: string;
  name: string;
  owner_id: string;
  total: number;
  done: number;
}

export function ListsPanel({
  me,
  selectedId,
  onSelect,
}: {
  me: User;
  selectedId: string | null;
  onSelect: (id: string) => void;
}) {
  const db = usePowerSync();
  const status = useStatus();
  const [name, setName] = useState('');
  const { data: lists } = useQuery<ListRow>(
    `SELECT l.id, l.name, l.owner_id,
            (SELECT count(*) FROM todos t WHERE t.list_id = l.id) AS total,
            (SELECT count(*) FROM todos t WHERE t.list_id = l.id AND t.completed = 1) AS done
       FROM lists l
      ORDER BY l.created_at, l.id`,
  );

  async function submit(e: FormEvent) {
    e.preventDefault();
    const trimmed = name.trim();
    if (!trimmed) return;
    setName('');
    onSelect(await createList(db, me, trimmed));
  }

  return (
    <nav className="card lists" aria-label="Lists">
      <h2>Lists</h2>
      <form className="inline-form" onSubmit={submit}>
        <label className="visually-hidden" htmlFor="new-list-name">
          New list name
        </label>
        <input
          id="new-list-name"
          data-testid="new-list-name"
          placeholder="New list…"
          maxLength={200}
          value={name}
          onChange={(e) => setName(e.target.value)}
        />
        <button className="primary" type="submit" data-testid="new-list-submit" disabled={!name.trim()}>
          Add
        </button>
      </form>
      {lists.length === 0 ? (
        // Local data shows at once; before the very first sync an empty database may just mean
        // "not downloaded yet". After it, empty means empty: say so, no spinner.
        status.hasSynced ? (
          <p className="empty" data-testid="lists-empty">
            No lists yet. Create one above, or ask someone to share theirs with you.
          </p>
        ) : (
          <p className="empty" data-testid="lists-loading">
            Getting your lists…
          </p>
        )
      ) : (
        <ul className="list-items">
          {lists.map((l) => {
            const todos = listSyncState(status, l.id);
            return (
            <li key={l.id}>
              <button
                className={`list-item${l.id === selectedId ? ' selected' : ''}`}
                data-testid="list-item"
                data-list-id={l.id}
                aria-current={l.id === selectedId ? 'true' : undefined}
                onClick={() => onSelect(l.id)}
              >
                <span className="list-name">{l.name}</span>
                {l.owner_id !== me.id && <span className="badge">shared</span>}
                {todos === 'synced' ? (
                  <span className="count" data-testid="list-sync" data-state={todos} aria-label={`${l.done} of ${l.total} done, on this device`}>
                    {l.done}/{l.total}
                  </span>
                ) : (
                  // Todos of lists not opened lately are not on the device: open the list to get them.
                  <span className="count muted" data-testid="list-sync" data-state={todos}>
                    {todos === 'syncing' ? '…' : '–'}
                  </span>
                )}
              </button>
            </li>
            );
          })}
        </ul>
      )}
    </nav>
  );
}
