import { usePowerSync, useQuery, useSyncStream } from '@powersync/react';
import { type FormEvent, useState } from 'react';
import type { User } from '../lib/api';
import { LIST_TODOS_STREAM, LIST_TODOS_TTL_SECONDS } from '../lib/powersync';
import type { ListMemberRecord, ListRecord, TodoRecord } from '../lib/schema';
import { addTodo, deleteList, removeMember } from '../lib/writes';
import { ShareForm } from './ShareForm';
import { TodoItem } from './TodoItem';

export function ListView({ me, listId }: { me: User; listId: string }) {
  const db = usePowerSync();
  const [description, setDescription] = useState('');
  // The list's todos sync while it is open, and stay on the device for the TTL after.
  const todosStream = useSyncStream({
    name: LIST_TODOS_STREAM,
    parameters: { list_id: listId },
    ttl: LIST_TODOS_TTL_SECONDS,
  });
  const todosSynced = todosStream?.subscription.hasSynced ?? false;
  const { data: lists } = useQuery<ListRecord & { id: string }>('SELECT * FROM lists WHERE id = ?', [listId]);
  const { data: todos } = useQuery<TodoRecord & { id: string }>(
    'SELECT * FROM todos WHERE list_id = ? ORDER BY created_at, id',
    [listId],
  );
  const { data: members } = useQuery<ListMemberRecord & { id: string }>(
    'SELECT * FROM list_members WHERE list_id = ? ORDER BY username',
    [listId],
  );
  const list = lists[0];
  if (!list) return null;
  const isOwner = list.owner_id === me.id;
  const myMembership = members.find((m) => m.user_id === me.id);

  async function submit(e: FormEvent) {
    e.preventDefault();
    const trimmed = description.trim();
    if (!trimmed) return;
    setDescription('');
    await addTodo(db, me, listId, trimmed);
  }

  return (
    <section className="card list-view" aria-labelledby="list-title">
      <div className="list-header">
        <h2 id="list-title" data-testid="list-title">
          {list.name}
        </h2>
        <span className="sync-detail" data-testid="list-todos-sync" data-state={todosSynced ? 'synced' : 'syncing'}>
          {todosSynced ? 'Todos on this device' : 'Getting todos…'}
        </span>
        {isOwner ? (
          <button
            className="danger ghost"
            data-testid="delete-list"
            onClick={() => {
              if (window.confirm(`Delete “${list.name}” and all its todos?`)) void deleteList(db, listId);
            }}
          >
            Delete list
          </button>
        ) : (
          myMembership && (
            <button className="ghost" data-testid="leave-list" onClick={() => void removeMember(db, myMembership.id)}>
              Leave list
            </button>
          )
        )}
      </div>

      <form className="inline-form" onSubmit={submit}>
        <label className="visually-hidden" htmlFor="new-todo-description">
          New todo
        </label>
        <input
          id="new-todo-description"
          data-testid="new-todo-description"
          placeholder="Add a todo…"
          maxLength={500}
          value={description}
          onChange={(e) => setDescription(e.target.value)}
        />
        <button className="primary" type="submit" data-testid="new-todo-submit" disabled={!description.trim()}>
          Add
        </button>
      </form>

      {todos.length === 0 ? (
        todosSynced ? (
          <p className="empty" data-testid="todos-empty">
            Nothing to do here yet.
          </p>
        ) : (
          <p className="empty" data-testid="todos-loading">
            Getting the todos…
          </p>
        )
      ) : (
        <ul className="todos" aria-label={`Todos in ${list.name}`}>
          {todos.map((t) => (
            <TodoItem key={t.id} me={me} todo={t} />
          ))}
        </ul>
      )}

      <div className="members">
        <h3>{isOwner ? 'Shared with' : 'Members'}</h3>
        {members.length === 0 && isOwner ? (
          <p className="empty" data-testid="members-empty">
            Only you.
          </p>
        ) : (
          <ul className="member-items">
            {!isOwner && (
              <li key="owner" data-testid="member-item" data-user-id={list.owner_id ?? ''} data-owner="true">
                <span>
                  @{list.owner_username ?? 'someone'}
                  <span className="muted"> (owner)</span>
                </span>
              </li>
            )}
            {members.map((m) => (
              <li key={m.id} data-testid="member-item" data-user-id={m.user_id ?? ''}>
                <span>
                  @{m.username ?? 'someone'}
                  {m.user_id === me.id && <span className="muted"> (you)</span>}
                </span>
                {isOwner && (
                  <button
                    className="ghost small"
                    aria-label={`Stop sharing with ${m.username ?? 'this user'}`}
                    onClick={() => void removeMember(db, m.id)}
                  >
                    Remove
                  </button>
                )}
              </li>
            ))}
          </ul>
        )}
        {isOwner && <ShareForm listId={listId} me={me} />}
      </div>
    </section>
  );
}
