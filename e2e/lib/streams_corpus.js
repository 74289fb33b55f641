// Stream definitions for the differential test: `{query}` is one auto-subscribed stream in an
// edition-3 config, `{yaml}` a whole file. `refused: true` marks ones both compilers refuse.

/** The examples of PowerSync's Sync Streams docs (quickstart, queries, parameters, CTEs). */
export const docsExamples = [
  { query: 'SELECT * FROM categories' },
  { query: 'SELECT * FROM products WHERE active = true' },
  { query: 'SELECT * FROM lists WHERE owner_id = auth.user_id()' },
  { query: "SELECT * FROM todos WHERE list_id = subscription.parameter('list_id')" },
  {
    query:
      "SELECT * FROM todos WHERE list_id = subscription.parameter('list_id') AND list_id IN (SELECT id FROM lists WHERE owner_id = auth.user_id())",
  },
  { query: 'SELECT * FROM todos WHERE list_id IN (SELECT list_id FROM list_members WHERE user_id = auth.user_id())' },
  { query: "SELECT * FROM projects WHERE org_id = auth.parameter('org_id')" },
  { query: "SELECT * FROM products WHERE region = connection.parameter('region')" },
  { query: "SELECT * FROM projects WHERE id IN subscription.parameter('project_ids')" },
  { query: "SELECT * FROM posts WHERE auth.user_id() IN (SELECT id FROM users WHERE is_admin = true)" },
  { query: 'SELECT id, name, owner_id FROM lists WHERE owner_id = auth.user_id()' },
  { query: 'SELECT id, upper(name) AS name, CAST(price AS TEXT) AS price FROM products' },
  { query: "SELECT id, data ->> 'title' AS title FROM documents WHERE owner_id = auth.user_id()" },
  {
    query:
      'SELECT todos.* FROM todos INNER JOIN lists ON todos.list_id = lists.id WHERE lists.owner_id = auth.user_id()',
  },
  {
    query:
      'SELECT comments.* FROM comments JOIN issues ON comments.issue_id = issues.id JOIN projects ON issues.project_id = projects.id WHERE projects.org_id IN (SELECT org_id FROM org_members WHERE user_id = auth.user_id())',
  },
  {
    yaml: `config:
  edition: 3
with:
  user_orgs: SELECT org_id FROM org_members WHERE user_id = auth.user_id()
streams:
  org_projects:
    auto_subscribe: true
    query: SELECT * FROM projects WHERE org_id IN user_orgs
  org_repos:
    auto_subscribe: true
    query: SELECT * FROM repositories WHERE org_id IN user_orgs
`,
  },
  {
    yaml: `config:
  edition: 3
streams:
  project_data:
    with:
      accessible: SELECT id FROM projects WHERE owner_id = auth.user_id()
    queries:
      - SELECT * FROM projects WHERE id IN accessible
      - SELECT * FROM tasks WHERE project_id IN accessible
`,
  },
  {
    yaml: `config:
  edition: 3
streams:
  user_data:
    auto_subscribe: true
    priority: 1
    queries:
      - SELECT * FROM settings WHERE user_id = auth.user_id()
      - SELECT * FROM notes WHERE user_id = auth.user_id()
`,
  },
  {
    yaml: `config:
  edition: 3
streams:
  issue:
    query: SELECT * FROM issues WHERE id = subscription.parameter('id')
    accept_potentially_dangerous_queries: true
`,
  },
];

/** Edge cases. */
export const corpus = [
  // Accepted by both.
  { query: 'SELECT * FROM t WHERE x = 1 OR y = 2' },
  { query: 'SELECT * FROM t WHERE (x = auth.user_id() OR y = auth.user_id()) AND z = 1' },
  { query: 'SELECT * FROM t WHERE NOT (x = 1 AND y = 2)' },
  { query: 'SELECT * FROM t WHERE x != 1' },
  { query: 'SELECT * FROM t WHERE x <> 1' },
  { query: 'SELECT * FROM t WHERE x IS NULL OR y IS NOT NULL' },
  { query: 'SELECT * FROM t WHERE x IS TRUE AND y IS NOT FALSE' },
  { query: 'SELECT * FROM t WHERE x BETWEEN 1 AND 3' },
  { query: 'SELECT * FROM t WHERE x NOT BETWEEN 1 AND 3' },
  { query: "SELECT *, CASE WHEN x > 1 THEN 'big' ELSE 'small' END AS size FROM t" },
  { query: "SELECT *, CASE x WHEN 1 THEN 'one' WHEN 2 THEN 'two' END AS n FROM t" },
  { query: 'SELECT * FROM t WHERE x::text = y' },
  { query: 'SELECT * FROM t WHERE CAST(x AS integer) = 1' },
  { query: 'SELECT * FROM t WHERE x = -1' },
  { query: 'SELECT * FROM t WHERE x IN ARRAY[1, 2, 3]' },
  { query: 'SELECT * FROM t WHERE x IN ROW(1, 2)' },
  { query: 'SELECT * FROM t WHERE x IN (1, 2, 3)', refused: true },
  { query: 'SELECT * FROM t WHERE x NOT IN (1, 2)', refused: true },
  { query: "SELECT * FROM t WHERE x NOT IN subscription.parameter('ids')" },
  { query: "SELECT * FROM t WHERE subscription.parameter('tag') IN t.tags" },
  { query: "SELECT * FROM t WHERE tags && subscription.parameter('tags')" },
  { query: 'SELECT * FROM t WHERE x IN (SELECT y FROM u)' },
  { query: 'SELECT * FROM t WHERE x IN (SELECT y FROM u WHERE z IN (SELECT w FROM v WHERE k = auth.user_id()))' },
  { query: "SELECT * FROM t WHERE x IN (SELECT value FROM json_each(auth.parameter('ids')))" },
  { query: "SELECT t.* FROM t, json_each(t.tags) AS j WHERE j.value = subscription.parameter('tag')" },
  { query: 'SELECT t.* FROM t, u WHERE t.a = u.b AND u.c = auth.user_id()' },
  { query: 'SELECT t.* FROM t JOIN u ON t.a = u.b AND t.c = u.d WHERE u.e = auth.user_id()' },
  { query: 'SELECT t.* FROM t JOIN u' },
  { query: "SELECT * FROM (SELECT a AS x FROM u WHERE b = auth.user_id()) AS s, t WHERE t.x = s.x" },
  { query: 'SELECT * FROM t WHERE 1 = 1' },
  { query: "SELECT * FROM t WHERE auth.parameter('admin') = true" },
  { query: "SELECT * FROM t WHERE auth.parameters() ->> 'role' = 'admin'" },
  { query: "SELECT * FROM t WHERE owner = auth.user_id() AND connection.parameter('x') = 'y'" },
  { query: 'SELECT DISTINCT * FROM t' },
  { query: 'SELECT * FROM "T" WHERE "X" = 1' },
  { query: 'SELECT * FROM Todos WHERE Owner = auth.user_id()' },
  { query: 'SELECT * FROM app.t WHERE x = 1' },
  { query: 'SELECT * FROM "t_%"' },
  { query: 'SELECT * FROM t AS renamed WHERE x = 1' },
  { query: "SELECT id, x ->> 'a.b' AS ab, x -> 'a' AS a, x ->> '$.a.b' AS deep FROM t" },
  { query: "SELECT id, json_extract(x, '$.a') AS a, json_array_length(x) AS n, json_keys(x) AS k FROM t" },
  { query: 'SELECT id, hex(x) AS h, length(y) AS l, lower(z) AS z, typeof(x) AS ty, ifnull(x, 0) AS i FROM t' },
  { query: "SELECT id, iif(x > 1, 'a', 'b') AS c, instr(y, 'a') AS p, substring(y, 2) AS s FROM t" },
  { query: "SELECT id, unixepoch(ts) AS e, datetime(ts) AS d, base64(y) AS b FROM t" },
  { query: "SELECT * FROM t WHERE x = subscription.parameter('a') OR x = subscription.parameter('b')" },

  // Refused by both.
  { query: 'SELECT * FROM t WHERE x LIKE 1', refused: true },
  { query: 'SELECT * FROM t WHERE json_valid(x)', refused: true },
  { query: 'SELECT * FROM t WHERE x IS y', refused: true },
  { query: 'SELECT * FROM t WHERE x ->> y = 1', refused: true },
  { query: 'SELECT * FROM t WHERE CAST(x AS int) = 1', refused: true },
  { query: 'SELECT * FROM t LEFT JOIN u ON t.a = u.b', refused: true },
  { query: 'SELECT t.* FROM t CROSS JOIN u', refused: true },
  { query: 'SELECT * FROM t WHERE EXISTS (SELECT 1 FROM u)', refused: true },
  { query: 'SELECT * FROM t WHERE x IS DISTINCT FROM 1', refused: true },
  { query: 'SELECT * FROM t WHERE x = ?', refused: true },
  { query: 'SELECT * FROM t WHERE request.user_id() = x', refused: true },
  { query: 'SELECT * FROM t WHERE x = token_parameters.a', refused: true },
  { query: 'SELECT * FROM t WHERE x = subscription.parameter(y)', refused: true },
  { query: 'WITH a AS (SELECT 1) SELECT * FROM a', refused: true },
  { query: 'SELECT * FROM t WHERE x = 1 GROUP BY x', refused: true },
  { query: 'SELECT * FROM t UNION SELECT * FROM u', refused: true },
  { query: 'SELECT * FROM t WHERE x = 1 LIMIT 1', refused: true },
  { query: 'SELECT * FROM t WHERE x = 1 ORDER BY x', refused: true },
  { query: 'SELECT * FROM t WHERE x && y', refused: true },
  { query: 'SELECT * FROM t WHERE substring(x FROM 1 FOR 2) = 1', refused: true },
  { query: 'SELECT * FROM t WHERE substr(x, 1, 2) = 1', refused: true },
  // PowerSync needs SQLite for it: hydration fails without it (as here).
  { yaml: 'config:\n  edition: 3\n  unstable_sqlite_expression_engine: true\nstreams:\n  s:\n    query: SELECT * FROM t\n', refused: true },
  { query: 'SELECT *, auth.user_id() AS me FROM t', refused: true },
  { query: 'SELECT t.*, u.* FROM t, u', refused: true },
  { query: 'SELECT * FROM t, u', refused: true },
  { query: 'SELECT t.* FROM t, u WHERE t.a = u.b', refused: false },
  { query: 'SELECT * FROM t WHERE x IN (SELECT * FROM u)', refused: true },
  { query: 'SELECT * FROM t WHERE x IN (SELECT a, b FROM u)', refused: true },
  { query: 'SELECT * FROM t WHERE x = (SELECT a FROM u)', refused: true },
  { query: 'SELECT * FROM t WHERE random() > 0', refused: true },
  { query: 'SELECT * FROM t WHERE x + auth.user_id() = 1', refused: true },
  { query: 'SELECT * FROM t WHERE foo.bar() = 1', refused: true },
  { query: 'SELECT * FROM t WHERE subscription.user_id() = x', refused: true },
  { query: 'SELECT * FROM t WHERE x = -y', refused: true },
  { query: 'SELECT t.* FROM t, u WHERE t.a > u.b', refused: true },
  { query: 'SELECT t.* FROM t JOIN u USING (a)', refused: true },
  { query: 'SELECT * FROM t WHERE x = nope(1)', refused: true },
  { query: 'SELECT * FROM t WHERE x NOT IN (SELECT a FROM u WHERE b = auth.user_id())', refused: true },
  { yaml: 'config:\n  edition: 3\nbucket_definitions:\n  b:\n    data: [SELECT * FROM t]\n', refused: true },
  { yaml: 'config:\n  edition: 3\nstreams:\n  s:\n    query: SELECT * FROM t\n    queries: [SELECT * FROM u]\n', refused: true },
  { yaml: 'config:\n  edition: 3\nstreams:\n  s:\n    auto_subscribe: true\n', refused: true },
  { yaml: 'config:\n  edition: 3\nstreams:\n  s:\n    priority: 7\n    query: SELECT * FROM t\n', refused: true },
  { yaml: 'config:\n  edition: 3\n  custom_types: true\nstreams:\n  s:\n    query: SELECT * FROM t\n', refused: true },
  { yaml: 'config:\n  edition: 3\n  timestamp_max_precision: 3\nstreams:\n  s:\n    query: SELECT * FROM t\n', refused: true },
  { yaml: 'config:\n  edition: 1\n  timestamp_max_precision: seconds\nbucket_definitions:\n  b:\n    data: [SELECT * FROM t]\n', refused: true },
  { yaml: 'config:\n  edition: 3\n  storage_version: 1\nstreams:\n  s:\n    query: SELECT * FROM t\n', refused: true },
  { yaml: 'config:\n  edition: 2\nwith:\n  c: SELECT id FROM u\nstreams:\n  s:\n    query: SELECT * FROM t\n', refused: true },
  { yaml: 'config:\n  edition: 3\nstreams:\n  s:\n    with:\n      c: SELECT * FROM u\n    query: SELECT * FROM t WHERE x IN c\n', refused: true },
  { yaml: 'config:\n  edition: 3\nstreams:\n  s:\n    with:\n      c: SELECT a, b FROM u\n    query: SELECT * FROM t WHERE x IN c\n', refused: true },

  // Accepted configs around the edges of the YAML.
  { yaml: 'config:\n  edition: 3\n  timestamp_max_precision: milliseconds\n  custom_postgres_types: false\nstreams:\n  s:\n    query: SELECT * FROM t\n' },
  { yaml: 'config:\n  edition: 2\nstreams:\n  s:\n    query: SELECT * FROM t WHERE x = auth.user_id()\n' },
  { yaml: 'config:\n  edition: 3\nstreams:\n  s:\n    with:\n      c: SELECT a FROM u WHERE b = auth.user_id()\n    query: SELECT * FROM t WHERE x IN c\n' },
  { yaml: 'config:\n  edition: 3\nwith:\n  c: SELECT a FROM u\nstreams:\n  s:\n    with:\n      c: SELECT b AS a FROM v\n    query: SELECT * FROM t WHERE x IN c\n' },
  { yaml: 'config:\n  edition: 3\nstreams:\n  s:\n    query: SELECT * FROM t\n    unknown_key: 1\n' },
];

/**
 * Refused by Riptide, accepted by PowerSync's compiler, each for a stated reason (also in
 * docs/sync-streams.md): accepting them would sync nothing useful or fail every row later.
 */
export const knownDivergences = [
  { query: 'SELECT * FROM t WHERE x % 2 = 0', reason: "PowerSync's evaluator fails on `%` for every row" },
  { query: 'SELECT * FROM t WHERE (x & 1) = 1', reason: "PowerSync's evaluator fails on `&` for every row" },
  { query: 'SELECT * FROM t WHERE (x | 1) = 1', reason: "PowerSync's evaluator fails on `|` for every row" },
  { query: 'SELECT * FROM t WHERE (x << 1) = 2', reason: "PowerSync's evaluator fails on `<<` for every row" },
  { query: 'SELECT name FROM t', reason: 'no id column: PowerSync syncs every row under the id ""' },
  { query: 'SELECT * FROM t WHERE ifnull(x, 1, 2)', reason: 'PowerSync ignores arguments after the second' },
  { query: 'SELECT * FROM t WHERE json_extract(x, 1, 2)', reason: 'PowerSync ignores further paths; a non-$ path fails' },
];
for (const d of knownDivergences) corpus.push(d.query ? { query: d.query } : { yaml: d.yaml });
