// The local (SQLite) schema. It mirrors the synced Postgres tables of migrations/0001_init.sql:
// uuid, text and timestamptz become text; boolean becomes integer (0/1). `id` is implicit.
// A column you add in a migration (and in sync-rules.yaml) must be added here as well.
import { column, Schema, Table } from '@powersync/web';

const lists = new Table(
  {
    owner_id: column.text,
    owner_username: column.text,
    name: column.text,
    created_at: column.text,
  },
  { indexes: { owner: ['owner_id'] } },
);

const todos = new Table(
  {
    list_id: column.text,
    description: column.text,
    completed: column.integer,
    created_at: column.text,
    completed_at: column.text,
    created_by: column.text,
    completed_by: column.text,
  },
  { indexes: { list: ['list_id'] } },
);

const list_members = new Table(
  {
    list_id: column.text,
    user_id: column.text,
    username: column.text,
    created_at: column.text,
  },
  { indexes: { list: ['list_id'], user: ['user_id'] } },
);

export const AppSchema = new Schema({ lists, todos, list_members });

export type Database = (typeof AppSchema)['types'];
export type ListRecord = Database['lists'];
export type TodoRecord = Database['todos'];
export type ListMemberRecord = Database['list_members'];
