import { usePowerSync } from '@powersync/react';
import { type FormEvent, useState } from 'react';
import type { User } from '../lib/api';
import type { TodoRecord } from '../lib/schema';
import { deleteTodo, editTodo, setCompleted } from '../lib/writes';

export function TodoItem({ me, todo }: { me: User; todo: TodoRecord & { id: string } }) {
  const db = usePowerSync();
  const [draft, setDraft] = useState<string | null>(null);
  const done = todo.completed === 1;
  const description = todo.description ?? '';

  async function save(e: FormEvent) {
    e.preventDefault();
    const next = draft?.trim();
    setDraft(null);
    if (next && next !== description) await editTodo(db, todo.id, next);
  }

  return (
    <li className={`todo${done ? ' done' : ''}`} data-testid="todo-item" data-todo-id={todo.id} data-completed={done ? '1' : '0'}>
      <input
        type="checkbox"
        data-testid="todo-toggle"
        checked={done}
        aria-label={`${done ? 'Reopen' : 'Complete'} “${description}”`}
        onChange={(e) => void setCompleted(db, me, todo.id, e.target.checked)}
      />
      {draft === null ? (
        <>
          <span className="todo-description" data-testid="todo-description">
            {description}
          </span>
          <button
            className="ghost small"
            data-testid="todo-edit"
            aria-label={`Edit “${description}”`}
            onClick={() => setDraft(description)}
          >
            Edit
          </button>
        </>
      ) : (
        <form className="todo-edit" onSubmit={save}>
          <input
            data-testid="todo-edit-input"
            aria-label="Todo description"
            autoFocus
            maxLength={500}
            value={draft}
            onChange={(e) => setDraft(e.target.value)}
            onKeyDown={(e) => {
              if (e.key === 'Escape') setDraft(null);
            }}
          />
          <button className="primary small" type="submit" data-testid="todo-edit-save">
            Save
          </button>
        </form>
      )}
      <button
        className="ghost small danger"
        data-testid="todo-delete"
        aria-label={`Delete “${description}”`}
        onClick={() => void deleteTodo(db, todo.id)}
      >
        Delete
      </button>
    </li>
  );
}
