// The Sync Streams side of the oracle (e2e/tests/oracle_streams.test.js): a seeded schema of
// orgs, users, lists, members and todos; 2–4 streams whose queries combine row conditions,
// request values (auth.user_id(), a token claim, a connection parameter, subscription
// parameters), subqueries (nested), JOINs and a CTE; rows, change transactions (membership
// grants and revocations, moves between lists, owner and org changes) and subscription changes.
//
// Every query is built once as a function of a dialect, and rendered twice: for the service (the
// stream definition, with `auth.user_id()`, `subscription.parameter('list')`, …) and for the
// oracle (plain Postgres SQL with those values substituted as literals for one client and one
// subscription). The query set stays where PowerSync's and Postgres's semantics agree: text and
// integer comparisons, booleans compared with `true`/`false`, NULLs, IN lists and subqueries.
import { Rng } from './prng.js';

export const USERS = ['u1', 'u2', 'u3', 'u4'];
const ORGS = ['o1', 'o2', 'o3'];
const REGIONS = ['eu', 'us'];
const ROLES = ['viewer', 'editor', null];
const TITLES = ['buy milk', 'x', '', null, 'Ünïcode'];

/** The synced tables and their columns (beside `id`): name → [{ name, kind }]. */
export const SYNCED = {
  o_lists: [
    { name: 'owner_id', kind: 'text' },
    { name: 'org_id', kind: 'text' },
    { name: 'archived', kind: 'bool' },
    { name: 'name', kind: 'text' },
  ],
  o_todos: [
    { name: 'list_id', kind: 'text' },
    { name: 'owner_id', kind: 'text' },
    { name: 'done', kind: 'bool' },
    { name: 'priority', kind: 'int' },
    { name: 'title', kind: 'text' },
  ],
};

const SCHEMA = `
CREATE TABLE o_orgs (id text PRIMARY KEY, region text);
CREATE TABLE o_users (id text PRIMARY KEY, org_id text, is_admin boolean);
CREATE TABLE o_lists (id text PRIMARY KEY, owner_id text, org_id text, archived boolean, name text);
CREATE TABLE o_members (id text PRIMARY KEY, list_id text, user_id text, role text);
CREATE TABLE o_todos (id text PRIMARY KEY, list_id text, owner_id text, done boolean, priority integer, title text);
`;

/** A Postgres literal for a JS value (strings, numbers, booleans, null). */
export function literal(v) {
  if (v === null || v === undefined) return 'NULL';
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return `'${String(v).replaceAll("'", "''")}'`;
}

/** The service's dialect: the stream definition's own words. */
const STREAM_DIALECT = {
  user: 'auth.user_id()',
  claim: (name) => `auth.parameter('${name}')`,
  conn: (name) => `connection.parameter('${name}')`,
  sub: (name) => `subscription.parameter('${name}')`,
  cte: (name) => name,
  ne: (a, b) => `${a} != ${b}`,
  inList: (a, items) => `${a} IN ARRAY[${items}]`,
  not: (c) => `NOT (${c})`,
};

/** The oracle's dialect for one client and one subscription's parameters. */
function oracleDialect(model, client, params) {
  const d = {
    user: literal(client.user),
    claim: (name) => literal(client.claims[name]),
    conn: (name) => literal(client.connParams[name]),
    sub: (name) => literal(params?.[name]),
    ne: (a, b) => `${a} IS DISTINCT FROM ${b}`,
    inList: (a, items) => `${a} IN (${items})`,
    not: (c) => `NOT coalesce((${c}), false)`,
  };
  d.cte = (name) => `(${model.ctes.get(name)(d)})`;
  return d;
}

/**
 * A condition on the synced row `p` of `table` alone, as a function of the dialect. `!=` and NOT
 * are the dialect's: in PowerSync a comparison with NULL under `!=` or NOT counts as true (checked
 * against @powersync/service-sync-rules: `NULL != 'x'` and `NOT (NULL = 1)` grant the row), so
 * the oracle renders them as `IS DISTINCT FROM` and `NOT coalesce(…, false)`. A list is
 * `IN ARRAY[…]` in a stream (PowerSync refuses `IN (a, b)`), `IN (…)` in Postgres.
 */
function rowCondition(rng, p, table) {
  const todos = [
    () => `${p}.done = true`,
    () => `${p}.done = false`,
    () => `${p}.done IS NULL`,
    () => `${p}.priority > 2`,
    (d) => d.inList(`${p}.priority`, '1, 4'),
    () => `${p}.priority BETWEEN 1 AND 3`,
    (d) => d.ne(`${p}.title`, "'x'"),
    () => `${p}.title IS NOT NULL`,
    () => `${p}.owner_id IS NULL`,
  ];
  const lists = [
    () => `${p}.archived = false`,
    () => `${p}.archived IS NOT NULL`,
    (d) => d.ne(`${p}.name`, "'x'"),
    () => `${p}.name IS NULL`,
    (d) => d.inList(`${p}.org_id`, "'o1', 'o3'"),
  ];
  return rng.pick(table === 'o_todos' ? todos : lists);
}

/** A condition granting rows to the request: a function of the dialect. */
function grant(rng, p, table, cteNames) {
  const list = table === 'o_todos' ? `${p}.list_id` : `${p}.id`;
  const options = [
    (d) => `${p}.owner_id = ${d.user}`,
    (d) => `${list} = ${d.sub('list')}`,
    (d) => `${list} IN (SELECT list_id FROM o_members WHERE user_id = ${d.user})`,
    (d) => `${list} IN (SELECT list_id FROM o_members WHERE user_id = ${d.user} AND role = 'editor')`,
    (d) => `${list} IN (SELECT id FROM o_lists WHERE owner_id = ${d.user})`,
    (d) => `${list} IN (SELECT id FROM o_lists WHERE org_id = ${d.claim('org')})`,
    (d) => `${list} IN (SELECT list_id FROM o_members WHERE user_id IN (SELECT id FROM o_users WHERE org_id = ${d.claim('org')}))`,
    (d) => `${list} IN (SELECT id FROM o_lists WHERE org_id IN (SELECT id FROM o_orgs WHERE region = ${d.conn('region')}))`,
    (d) => `${list} IN (SELECT l.id FROM o_lists l, o_users u WHERE l.org_id = u.org_id AND u.id = ${d.user})`,
    (d) => `${d.user} IN (SELECT id FROM o_users WHERE is_admin = true)`,
  ];
  if (table === 'o_todos') {
    options.push((d) => `${list} IN (SELECT list_id FROM o_members WHERE user_id = ${d.user}) AND ${list} = ${d.sub('list')}`);
  }
  for (const name of cteNames) options.push((d) => `${list} IN ${d.cte(name)}`);
  return rng.pick(options);
}

/** A WHERE clause of grants and row conditions (AND/OR/NOT), as a function of the dialect. */
function condition(rng, p, table, cteNames, depth) {
  const roll = rng.next();
  if (depth > 0 && roll < 0.3) {
    const op = rng.bool(0.6) ? 'AND' : 'OR';
    const a = condition(rng, p, table, cteNames, depth - 1);
    const b = condition(rng, p, table, cteNames, depth - 1);
    return (d) => `(${a(d)} ${op} ${b(d)})`;
  }
  if (depth > 0 && roll < 0.38) {
    const c = rowCondition(rng, p, table);
    return (d) => d.not(c(d));
  }
  if (roll < 0.75) return grant(rng, p, table, cteNames);
  return rowCondition(rng, p, table);
}

/** One stream query: `{ table, render(d) }`. */
function query(rng, table, cteNames) {
  // The synced table is never aliased: an alias would name the client-side table (as in
  // PowerSync), and every query of a table must land in one client table.
  if (table === 'o_todos' && rng.bool(0.3)) {
    const row = rowCondition(rng, 'o_todos', table);
    const t = 'o_todos';
    const render = rng.pick([
      (d) => `SELECT ${t}.* FROM ${t} JOIN o_lists l ON ${t}.list_id = l.id WHERE l.owner_id = ${d.user} AND ${row(d)}`,
      (d) => `SELECT ${t}.* FROM ${t}, o_members m WHERE ${t}.list_id = m.list_id AND m.user_id = ${d.user}`,
      (d) => `SELECT ${t}.* FROM ${t}, o_lists l, o_members m WHERE ${t}.list_id = l.id AND m.list_id = l.id AND m.user_id = ${t}.owner_id AND l.org_id = ${d.claim('org')}`,
      (d) => `SELECT ${t}.* FROM ${t} WHERE ${t}.list_id IN (SELECT m.list_id FROM o_members m JOIN o_users u ON m.user_id = u.id WHERE u.org_id = ${d.claim('org')} AND u.is_admin = true)`,
    ]);
    return { table, render };
  }
  const qualified = rng.bool(0.5);
  const cols = qualified ? `${table}.*` : '*';
  const where = condition(rng, table, table, cteNames, 2);
  return { table, render: (d) => `SELECT ${cols} FROM ${table} WHERE ${where(d)}` };
}

export class StreamsModel {
  constructor(seed) {
    const rng = new Rng(seed);
    this.rng = rng;
    this.seed = seed;
    this.ctes = new Map();
    if (rng.bool(0.4)) {
      const cte = rng.pick([
        (d) => `SELECT id FROM o_lists WHERE owner_id = ${d.user}`,
        (d) => `SELECT list_id FROM o_members WHERE user_id = ${d.user}`,
      ]);
      this.ctes.set('mine', cte);
    }
    const cteNames = [...this.ctes.keys()];
    const count = rng.int(2, 4);
    this.streams = [];
    for (let i = 0; i < count; i++) {
      // At least one auto-subscribed stream and one that needs a subscription.
      const auto = i === 0 ? true : i === 1 ? false : rng.bool(0.4);
      const tables = rng.bool(0.25) ? ['o_todos', 'o_lists'] : [rng.pick(['o_todos', 'o_todos', 'o_lists'])];
      this.streams.push({ name: `s${i}`, auto, queries: tables.map((t) => query(rng, t, cteNames)) });
    }
    this.nextId = 100;
    this.rows = this.initialRows();
    // Three clients; `u4` owns and joins data but never connects.
    this.clients = USERS.slice(0, 3).map((user) => ({
      user,
      claims: { org: rng.bool(0.8) ? rng.pick(ORGS) : undefined },
      connParams: { region: rng.bool(0.8) ? rng.pick(REGIONS) : undefined },
      subscriptions: [],
    }));
  }

  /** The sync config: `config: edition: 3`, the CTE if any, the streams. */
  configYaml() {
    const lines = ['config:', '  edition: 3'];
    if (this.ctes.size) {
      lines.push('with:');
      for (const [name, render] of this.ctes) lines.push(`  ${name}: ${JSON.stringify(render(STREAM_DIALECT))}`);
    }
    lines.push('streams:');
    for (const s of this.streams) {
      lines.push(`  ${s.name}:`, `    auto_subscribe: ${s.auto}`);
      if (s.queries.length === 1) lines.push(`    query: ${JSON.stringify(s.queries[0].render(STREAM_DIALECT))}`);
      else {
        lines.push('    queries:');
        for (const q of s.queries) lines.push(`      - ${JSON.stringify(q.render(STREAM_DIALECT))}`);
      }
    }
    return `${lines.join('\n')}\n`;
  }

  schemaSql() {
    return SCHEMA;
  }

  id(prefix) {
    this.nextId += 1;
    return `${prefix}${this.nextId}`;
  }

  maybe(v, p = 0.15) {
    return this.rng.bool(p) ? null : v;
  }

  listIds() {
    return this.rows.lists.map((l) => l.id);
  }

  /** Initial rows, kept in `this.rows` so changes can pick existing ids. */
  initialRows() {
    const rng = this.rng;
    const rows = { orgs: [], users: [], lists: [], members: [], todos: [] };
    this.rows = rows;
    for (const id of ORGS) rows.orgs.push({ id, region: this.maybe(rng.pick(REGIONS)) });
    for (const id of USERS) rows.users.push({ id, org_id: this.maybe(rng.pick(ORGS)), is_admin: rng.pick([true, false, null]) });
    for (let i = 1; i <= 5; i++) rows.lists.push(this.newList(`l${i}`));
    for (let i = 0; i < 8; i++) rows.members.push(this.newMember());
    for (let i = 0; i < 16; i++) rows.todos.push(this.newTodo());
    return rows;
  }

  newList(id = this.id('l')) {
    const rng = this.rng;
    return { id, owner_id: this.maybe(rng.pick(USERS)), org_id: this.maybe(rng.pick(ORGS)), archived: rng.pick([true, false, null]), name: rng.pick(['Groceries', 'Work', 'x', null]) };
  }

  newMember() {
    const rng = this.rng;
    return { id: this.id('m'), list_id: this.maybe(rng.pick(this.listIds()), 0.1), user_id: rng.pick(USERS), role: rng.pick(ROLES) };
  }

  newTodo() {
    return { id: this.id('t'), ...this.todoFields() };
  }

  todoFields() {
    const rng = this.rng;
    return {
      list_id: this.maybe(rng.pick(this.listIds()), 0.1),
      owner_id: this.maybe(rng.pick(USERS)),
      done: rng.pick([true, false, null]),
      priority: rng.pick([1, 2, 3, 4, null]),
      title: rng.pick(TITLES),
    };
  }

  /** INSERT statements for the initial rows. */
  initialSql() {
    const out = [];
    for (const [table, rows] of Object.entries(this.rows)) for (const row of rows) out.push(insert(`o_${table}`, row));
    return out;
  }

  /** `n` batches of transactions (each a list of statements), applied to the model as drawn. */
  changeBatches(n) {
    const batches = [];
    for (let b = 0; b < n; b++) {
      const batch = [];
      const count = this.rng.int(3, 7);
      for (let i = 0; i < count; i++) {
        const tx = [];
        const statements = this.rng.int(1, 3);
        for (let s = 0; s < statements; s++) tx.push(this.change());
        batch.push(tx);
      }
      batches.push(batch);
    }
    return batches;
  }

  /** One statement changing the data, weighted toward what moves rows between clients. */
  change() {
    const rng = this.rng;
    const r = this.rows;
    const roll = rng.next();
    if (roll < 0.15) {
      const m = this.newMember();
      r.members.push(m);
      return insert('o_members', m);
    }
    if (roll < 0.27 && r.members.length) {
      const m = rng.pick(r.members);
      r.members = r.members.filter((x) => x !== m);
      return `DELETE FROM o_members WHERE id = ${literal(m.id)}`;
    }
    if (roll < 0.35 && r.members.length) {
      const m = rng.pick(r.members);
      m.role = rng.pick(ROLES);
      m.user_id = rng.bool(0.5) ? rng.pick(USERS) : m.user_id;
      return `UPDATE o_members SET role = ${literal(m.role)}, user_id = ${literal(m.user_id)} WHERE id = ${literal(m.id)}`;
    }
    if (roll < 0.47) {
      const t = this.newTodo();
      r.todos.push(t);
      return insert('o_todos', t);
    }
    if (roll < 0.65 && r.todos.length) {
      const t = rng.pick(r.todos);
      const column = rng.pick(['list_id', 'owner_id', 'done', 'priority', 'title']);
      t[column] = this.todoFields()[column];
      return `UPDATE o_todos SET ${column} = ${literal(t[column])} WHERE id = ${literal(t.id)}`;
    }
    if (roll < 0.72 && r.todos.length) {
      const t = rng.pick(r.todos);
      r.todos = r.todos.filter((x) => x !== t);
      return `DELETE FROM o_todos WHERE id = ${literal(t.id)}`;
    }
    if (roll < 0.84) {
      const l = rng.pick(r.lists);
      const column = rng.pick(['owner_id', 'org_id', 'archived', 'name']);
      l[column] = this.newList(l.id)[column];
      return `UPDATE o_lists SET ${column} = ${literal(l[column])} WHERE id = ${literal(l.id)}`;
    }
    if (roll < 0.88) {
      const l = this.newList();
      r.lists.push(l);
      return insert('o_lists', l);
    }
    if (roll < 0.91 && r.lists.length > 3) {
      const l = rng.pick(r.lists);
      r.lists = r.lists.filter((x) => x !== l);
      return `DELETE FROM o_lists WHERE id = ${literal(l.id)}`;
    }
    if (roll < 0.97) {
      const u = rng.pick(r.users);
      if (rng.bool(0.5)) {
        u.org_id = this.maybe(rng.pick(ORGS));
        return `UPDATE o_users SET org_id = ${literal(u.org_id)} WHERE id = ${literal(u.id)}`;
      }
      u.is_admin = rng.pick([true, false, null]);
      return `UPDATE o_users SET is_admin = ${literal(u.is_admin)} WHERE id = ${literal(u.id)}`;
    }
    const o = rng.pick(r.orgs);
    o.region = this.maybe(rng.pick(REGIONS));
    return `UPDATE o_orgs SET region = ${literal(o.region)} WHERE id = ${literal(o.id)}`;
  }

  /** Random subscription parameters for stream `s`: `{ list }` (sometimes missing or unknown). */
  subscriptionParams() {
    const rng = this.rng;
    if (rng.bool(0.15)) return {};
    return { list: rng.pick([...this.listIds(), 'l-none']) };
  }

  /**
   * A subscription change for `client`: `{ op: 'subscribe', stream, params }` or
   * `{ op: 'unsubscribe', stream, params }` (of one it holds), applied to the client's model.
   */
  subscriptionChange(client) {
    const rng = this.rng;
    if (client.subscriptions.length && rng.bool(0.35)) {
      const s = rng.pick(client.subscriptions);
      client.subscriptions = client.subscriptions.filter((x) => x !== s);
      return { op: 'unsubscribe', ...s };
    }
    const stream = rng.pick(this.streams).name;
    const params = this.subscriptionParams();
    const key = JSON.stringify([stream, params]);
    if (client.subscriptions.some((s) => JSON.stringify([s.stream, s.params]) === key)) return null;
    const s = { stream, params };
    client.subscriptions.push(s);
    return { op: 'subscribe', ...s };
  }

  /**
   * The oracle's queries for `client`: `[{ table, sql }]`, one per query of each subscription in
   * force (auto-subscribed streams with no parameters, then the client's own subscriptions).
   */
  oracleQueries(client) {
    const held = [
      ...this.streams.filter((s) => s.auto).map((s) => ({ stream: s.name, params: null })),
      ...client.subscriptions,
    ];
    const out = [];
    for (const sub of held) {
      const stream = this.streams.find((s) => s.name === sub.stream);
      const d = oracleDialect(this, client, sub.params);
      for (const q of stream.queries) out.push({ table: q.table, sql: `SELECT DISTINCT q.* FROM (${q.render(d)}) q` });
    }
    return out;
  }
}

function insert(table, row) {
  const cols = Object.keys(row);
  return `INSERT INTO ${table} (${cols.join(', ')}) VALUES (${cols.map((c) => literal(row[c])).join(', ')})`;
}
