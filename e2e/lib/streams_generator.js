// Seeded jobs for the Sync Streams differential test: a small schema (orgs, users, lists,
// list_members, todos), a config of 1-3 streams whose queries combine conditions on the synced
// table, request values, subqueries (nested), JOINs, CTEs, json_each and IN arrays with AND/OR/
// NOT, rows with NULLs and mixed types, and connections with tokens, connection parameters and
// subscriptions (some with missing or oddly typed parameters).

/** mulberry32: a tiny seeded PRNG. */
function rng(seed) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (n) => Math.floor(next() * n);
  const pick = (items) => items[int(items.length)];
  const chance = (p) => next() < p;
  return { next, int, pick, chance };
}

const USERS = ['u1', 'u2', 'u3', 'u4'];
const ORGS = ['o1', 'o2', 'o3'];
const LISTS = ['l1', 'l2', 'l3', 'l4', 'l5'];
const TAGS = ['red', 'green', 'blue'];

function rows(r) {
  const maybe = (v, p = 0.15) => (r.chance(p) ? null : v);
  const tags = () => JSON.stringify(TAGS.filter(() => r.chance(0.4)));
  const orgs = ORGS.map((id) => ({ id, name: `org ${id}`, region: maybe(r.pick(['eu', 'us'])) }));
  const users = USERS.map((id) => ({ id, org_id: maybe(r.pick(ORGS)), is_admin: r.pick([0, 1, null]), name: `n${id}` }));
  const lists = LISTS.map((id) => ({
    id,
    owner_id: maybe(r.pick(USERS)),
    org_id: maybe(r.pick(ORGS)),
    archived: r.pick([0, 1, null, true, false]),
    tags: maybe(tags()),
    name: r.pick(['Groceries', 'Work', 'x', null]),
  }));
  const members = [];
  for (let i = 0; i < 10; i++) {
    members.push({ id: `m${i}`, list_id: maybe(r.pick(LISTS), 0.1), user_id: maybe(r.pick(USERS), 0.1), role: r.pick(['viewer', 'editor', null, '2', '3']) });
  }
  const todos = [];
  for (let i = 0; i < 16; i++) {
    todos.push({
      id: `t${i}`,
      list_id: maybe(r.pick(LISTS), 0.1),
      owner_id: maybe(r.pick(USERS)),
      done: r.pick([0, 1, null, true]),
      priority: r.pick([1, 2, 3, 4, null, { real: 2.5 }, '3']),
      title: r.pick(['buy milk', 'x', '', null, 'Ünïcode']),
      labels: maybe(tags()),
      meta: maybe(JSON.stringify({ a: { b: r.int(3) }, 'a.b': r.pick(['dot', null]), flag: r.pick([true, false, null]) })),
    });
  }
  return { orgs, users, lists, list_members: members, todos };
}

/** A condition on the synced table `p` (alias) of `table`. */
function rowCondition(r, p, table) {
  const todoConds = [
    `${p}.done = 0`,
    `NOT ${p}.done`,
    `${p}.done IS NULL`,
    `${p}.priority > 2`,
    `${p}.priority BETWEEN 1 AND 3`,
    `${p}.priority IN (1, 4)`,
    `${p}.title != 'x'`,
    `${p}.title IS NOT NULL`,
    `${p}.meta ->> 'a.b' = 'dot'`,
    `${p}.meta ->> '$.a.b' = 1`,
    `${p}.priority IN ARRAY[2, 3]`,
    `${p}.owner_id NOT IN ('u1', 'u2')`,
    `length(${p}.title) > 1`,
    `CASE WHEN ${p}.priority > 2 THEN 1 ELSE 0 END = 1`,
    `CASE ${p}.title WHEN 'x' THEN 0 ELSE 1 END`,
    `${p}.done IS TRUE`,
    `${p}.done IS NOT FALSE`,
    `${p}.meta -> 'a' = '{"b":1}'`,
    `${p}.meta ->> 'flag'`,
    `${p}.priority + 1 > 3`,
    `${p}.priority / 2 = 1`,
    `${p}.title || '!' = 'x!'`,
    `typeof(${p}.priority) = 'text'`,
    `${p}.priority::integer = 3`,
  ];
  const listConds = [
    `${p}.archived = 0`,
    `NOT ${p}.archived`,
    `${p}.archived IS NOT TRUE`,
    `${p}.name != 'x'`,
    `${p}.name IS NULL`,
    `${p}.org_id IN ('o1', 'o3')`,
  ];
  return r.pick(table === 'todos' ? todoConds : listConds);
}

/** A condition relating the synced table to the request. */
function grant(r, p, table, ctes) {
  const listCol = table === 'todos' ? `${p}.list_id` : `${p}.id`;
  const options = [
    () => `${p}.owner_id = auth.user_id()`,
    () => `${listCol} = subscription.parameter('list')`,
    () => `${listCol} IN (SELECT list_id FROM list_members WHERE user_id = auth.user_id())`,
    () => `${listCol} IN (SELECT list_id FROM list_members WHERE user_id = auth.user_id() AND role = 'editor')`,
    () => `${listCol} IN (SELECT id FROM lists WHERE owner_id = auth.user_id())`,
    () => `${listCol} IN (SELECT id FROM lists WHERE org_id = auth.parameter('org'))`,
    () => `${listCol} IN (SELECT list_id FROM list_members WHERE user_id IN (SELECT id FROM users WHERE org_id = auth.parameter('org')))`,
    () => `${listCol} IN subscription.parameter('lists')`,
    () => `${listCol} IN (SELECT value FROM json_each(auth.parameter('lists')))`,
    () => `${listCol} IN ARRAY['l1', 'l2']`,
    () => `auth.user_id() IN (SELECT id FROM users WHERE is_admin = 1)`,
    () => `auth.parameter('admin') = true`,
    () => `connection.parameter('region') = 'eu'`,
    () => `${p}.owner_id = connection.parameter('owner')`,
    () => `${listCol} IN (SELECT l.id FROM lists l, users u WHERE l.org_id = u.org_id AND u.id = auth.user_id())`,
    () => `${listCol} IN (SELECT id FROM lists WHERE org_id IN (SELECT id FROM orgs WHERE region = connection.parameter('region')))`,
  ];
  if (table === 'todos') {
    options.push(
      () => `${p}.owner_id IN (SELECT user_id FROM list_members WHERE list_id = ${p}.list_id AND role = subscription.parameter('role'))`,
      () => `${p}.priority IN (SELECT CAST(role AS integer) FROM list_members WHERE user_id = auth.user_id())`,
      () => `${p}.list_id IN (SELECT list_id FROM list_members WHERE user_id = auth.user_id()) AND ${p}.list_id = subscription.parameter('list')`,
      () => `subscription.parameter('tag') IN ${p}.labels`,
      () => `${p}.labels && subscription.parameter('tags')`,
      () => `${p}.priority = subscription.parameter('priority')`,
    );
  } else {
    options.push(() => `subscription.parameter('tag') IN ${p}.tags`);
  }
  if (ctes.length) options.push(() => `${listCol} IN ${r.pick(ctes)}`);
  return r.pick(options)();
}

function condition(r, p, table, ctes, depth) {
  const roll = r.next();
  if (depth > 0 && roll < 0.25) {
    const op = r.chance(0.6) ? 'AND' : 'OR';
    return `(${condition(r, p, table, ctes, depth - 1)} ${op} ${condition(r, p, table, ctes, depth - 1)})`;
  }
  if (depth > 0 && roll < 0.3) return `NOT (${rowCondition(r, p, table)})`;
  if (roll < 0.6) return grant(r, p, table, ctes);
  return rowCondition(r, p, table);
}

function columns(r, p, table) {
  const options = [
    `*`,
    `${p}.*`,
    table === 'todos'
      ? `${p}.id, ${p}.title, upper(${p}.title) AS loud, ${p}.priority * 2 AS twice, ${p}.meta ->> 'a.b' AS ab`
      : `${p}.id, ${p}.name, ${p}.owner_id, ifnull(${p}.archived, -1) AS archived`,
    `${p}.id AS id, CAST(${p}.id AS text) || '!' AS label, typeof(${p}.${table === 'todos' ? 'priority' : 'archived'}) AS t`,
  ];
  return r.pick(options);
}

function query(r, table, ctes) {
  const aliased = r.chance(0.4);
  const p = aliased ? 'p' : table;
  const from = aliased ? `${table} AS p` : table;
  const cols = columns(r, p, table);
  const where = condition(r, p, table, ctes, 2);
  if (table === 'todos' && r.chance(0.3)) {
    // Joins instead of subqueries: two columns from one member row, a json_each of the row,
    // a subquery in FROM, three tables in a triangle.
    return r.pick([
      () => `SELECT ${p}.* FROM ${from} JOIN lists l ON ${p}.list_id = l.id WHERE l.owner_id = auth.user_id() AND ${rowCondition(r, p, table)}`,
      () => `SELECT ${p}.* FROM ${from}, list_members m WHERE ${p}.list_id = m.list_id AND ${p}.owner_id = m.user_id AND m.role = subscription.parameter('role')`,
      () => `SELECT ${p}.* FROM ${from}, json_each(${p}.labels) AS j WHERE j.value = subscription.parameter('tag')`,
      () => `SELECT ${p}.* FROM ${from}, (SELECT list_id AS l FROM list_members WHERE user_id = auth.user_id()) AS mine WHERE ${p}.list_id = mine.l`,
      () => `SELECT ${p}.* FROM ${from}, lists l, list_members m WHERE ${p}.list_id = l.id AND m.list_id = l.id AND m.user_id = ${p}.owner_id AND l.org_id = auth.parameter('org')`,
      () => `SELECT ${p}.* FROM ${from} WHERE ${p}.list_id IN (SELECT m.list_id FROM list_members m JOIN users u ON m.user_id = u.id WHERE u.org_id = auth.parameter('org') AND u.is_admin = 1)`,
    ])();
  }
  return `SELECT ${cols} FROM ${from} WHERE ${where}`;
}

function subscriptionParameters(r) {
  const params = {};
  if (r.chance(0.8)) params.list = r.pick([...LISTS, 5, null]);
  if (r.chance(0.4)) params.lists = r.pick([[...LISTS].slice(0, 2), ['l3'], [], 'l1', null]);
  if (r.chance(0.4)) params.tag = r.pick(TAGS);
  if (r.chance(0.3)) params.tags = r.pick([['red'], ['green', 'blue'], []]);
  if (r.chance(0.3)) params.priority = r.pick([1, 2, 3, '2']);
  if (r.chance(0.4)) params.role = r.pick(['viewer', 'editor', 1]);
  return params;
}

/** One job: a config, rows, and a few connections. */
export function generateJob(seed) {
  const r = rng(seed);
  const ctes = [];
  let withBlock = '';
  if (r.chance(0.3)) {
    ctes.push('my_lists');
    withBlock = `with:\n  my_lists: ${JSON.stringify(r.pick([
      'SELECT id FROM lists WHERE owner_id = auth.user_id()',
      'SELECT list_id FROM list_members WHERE user_id = auth.user_id()',
    ]))}\n`;
  }
  const streams = [];
  const count = 1 + r.int(3);
  for (let i = 0; i < count; i++) {
    const table = r.pick(['todos', 'todos', 'lists']);
    const auto = r.chance(0.5);
    const queries = r.chance(0.2) ? [query(r, table, ctes), query(r, r.pick(['todos', 'lists']), ctes)] : [query(r, table, ctes)];
    let s = `  s${i}:\n    auto_subscribe: ${auto}\n`;
    if (r.chance(0.3)) s += `    priority: ${r.int(4)}\n`;
    if (queries.length === 1) s += `    query: ${JSON.stringify(queries[0])}\n`;
    else s += `    queries:\n${queries.map((q) => `      - ${JSON.stringify(q)}\n`).join('')}`;
    streams.push(s);
  }
  const yaml = `config:\n  edition: 3\n${withBlock}streams:\n${streams.join('')}`;
  const connections = [];
  for (let c = 0; c < 4; c++) {
    const subscriptions = [];
    const n = r.int(4);
    for (let i = 0; i < n; i++) {
      subscriptions.push({
        stream: r.chance(0.9) ? `s${r.int(count)}` : 'nope',
        parameters: r.chance(0.9) ? subscriptionParameters(r) : null,
        override_priority: r.chance(0.2) ? r.int(4) : null,
      });
    }
    connections.push({
      token: {
        sub: r.pick([...USERS, undefined]),
        org: r.pick([...ORGS, undefined]),
        admin: r.pick([true, false, undefined]),
        lists: r.pick([JSON.stringify(['l1', 'l4']), undefined]),
      },
      parameters: { region: r.pick(['eu', 'us', undefined]), owner: r.pick([...USERS, undefined]) },
      include_defaults: r.chance(0.85),
      subscriptions,
    });
  }
  return { yaml, tables: rows(r), connections };
}
