// Every change the app makes. Each one writes to the local database only: the UI (which watches
// the local database) shows it at once, and the SDK uploads it in the background. Writes that
// belong together run in one `writeTransaction`, so they are applied (locally, in the upload
// and in Postgres) all together or not at all.
import type { AbstractPowerSyncDatabase, Transaction } from '@powersync/web';
import type { User } from './api';

const now = () => new Date().toISOString();

async function newId(tx: Transaction): Promise<string> {
  // uuid() is provided by the PowerSync SQLite extension (no secure context needed).
  const { id } = await tx.get<{ id: string }>('SELECT uuid() AS id');
  return id;
}

/** Creates a list, with its first todos if any. Returns the new list's id. */
export function createList(db: AbstractPowerSyncDatabase, me: User, name: string, todos: string[] = []) {
  return db.writeTransaction(async (tx) => {
    const listId = await newId(tx);
    const at = now();
    await tx.execute('INSERT INTO lists (id, owner_id, name, created_at) VALUES (?, ?, ?, ?)', [listId, me.id, name, at]);
    for (const description of todos) {
      await tx.execute(
        'INSERT INTO todos (id, list_id, description, completed, created_at, created_by) VALUES (?, ?, ?, 0, ?, ?)',
        [await newId(tx), listId, description, at, me.id],
      );
    }
    return listId;
  });
}

/** Deletes a list with its todos and memberships (Postgres cascades too; locally we do it ourselves). */
export function deleteList(db: AbstractPowerSyncDatabase, listId: string) {
  return db.writeTransaction(async (tx) => {
    await tx.execute('DELETE FROM todos WHERE list_id = ?', [listId]);
    await tx.execute('DELETE FROM list_members WHERE list_id = ?', [listId]);
    await tx.execute('DELETE FROM lists WHERE id = ?', [listId]);
  });
}

export function addTodo(db: AbstractPowerSyncDatabase, me: User, listId: string, description: string) {
  return db.writeTransaction(async (tx) => {
    await tx.execute(
      'INSERT INTO todos (id, list_id, description, completed, created_at, created_by) VALUES (?, ?, ?, 0, ?, ?)',
      [await newId(tx), listId, description, now(), me.id],
    );
  });
}

export function setCompleted(db: AbstractPowerSyncDatabase, me: User, todoId: string, completed: boolean) {
  return db.writeTransaction(async (tx) => {
    await tx.execute('UPDATE todos SET completed = ?, completed_at = ?, completed_by = ? WHERE id = ?', [
      completed ? 1 : 0,
      completed ? now() : null,
      completed ? me.id : null,
      todoId,
    ]);
  });
}

export function editTodo(db: AbstractPowerSyncDatabase, todoId: string, description: string) {
  return db.writeTransaction(async (tx) => {
    await tx.execute('UPDATE todos SET description = ? WHERE id = ?', [description, todoId]);
  });
}

export function deleteTodo(db: AbstractPowerSyncDatabase, todoId: string) {
  return db.writeTransaction(async (tx) => {
    await tx.execute('DELETE FROM todos WHERE id = ?', [todoId]);
  });
}

/** Shares a list with `user` (found with GET /api/users/by-username/…). */
export function shareList(db: AbstractPowerSyncDatabase, listId: string, user: User) {
  return db.writeTransaction(async (tx) => {
    const existing = await tx.getOptional('SELECT id FROM list_members WHERE list_id = ? AND user_id = ?', [
      listId,
      user.id,
    ]);
    if (existing) return;
    await tx.execute('INSERT INTO list_members (id, list_id, user_id, username, created_at) VALUES (?, ?, ?, ?, ?)', [
      await newId(tx),
      listId,
      user.id,
      user.username,
      now(),
    ]);
  });
}

/** The owner removes a member, or a member leaves (deletes their own membership). */
export function removeMember(db: AbstractPowerSyncDatabase, memberId: string) {
  return db.writeTransaction(async (tx) => {
    await tx.execute('DELETE FROM list_members WHERE id = ?', [memberId]);
  });
}
