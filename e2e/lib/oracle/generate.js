// The oracle test's generator: from one seed, a source schema, sync rules within the supported
// classic subset, the same rules as plain SQL over Postgres (the oracle), initial rows and a
// sequence of change transactions. Everything here is a pure function of the seed.
import { Rng } from './prng.js';

/** Source column types and how each one is generated, filtered and compared. */
// `client`: the @powersync/node column type. `norm`: how values are compared (see compare.js).
// `canon(col, edition)`: Postgres SQL giving the value as text in the form the client must hold it.
export const TYPES = {
  text: { pg: 'text', client: 'text', norm: 'text', canon: (c) => c },
  integer: { pg: 'integer', client: 'integer', norm: 'text', canon: (c) => `${c}::text` },
  bigint: { pg: 'bigint', client: 'integer', norm: 'text', canon: (c) => `${c}::text` },
  boolean: {
    pg: 'boolean',
    client: 'integer',
    norm: 'text',
    canon: (c) => `CASE WHEN ${c} THEN '1' WHEN NOT ${c} THEN '0' END`,
  },
  numeric: { pg: 'numeric', client: 'text', norm: 'text', canon: (c) => `${c}::text` },
  real: { pg: 'real', client: 'real', norm: 'real', canon: (c) => `${c}::text` },
  double: { pg: 'double precision', client: 'real', norm: 'real', canon: (c) => `${c}::text` },
  uuid: { pg: 'uuid', client: 'text', norm: 'text', canon: (c) => `${c}::text` },
  jsonb: { pg: 'jsonb', client: 'text', norm: 'text', canon: (c) => `${c}::text` },
  timestamptz: {
    pg: 'timestamptz',
    client: 'text',
    norm: 'text',
    // docs/protocol.md §8.2: UTC; legacy keeps Postgres' sub-second digits (none if zero),
    // edition 2 is ISO-8601 with 6 digits.
    canon: (c, edition) =>
      edition >= 2
        ? `to_char(${c} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`
        : `to_char(${c} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') ||
           CASE WHEN extract(microseconds FROM ${c})::bigint % 1000000 = 0 THEN ''
                ELSE '.' || rtrim(to_char(${c} AT TIME ZONE 'UTC', 'US'), '0') END || 'Z'`,
  },
  date: { pg: 'date', client: 'text', norm: 'text', canon: (c) => `to_char(${c}, 'YYYY-MM-DD')` },
  text_array: { pg: 'text[]', client: 'text', norm: 'json', canon: (c) => `array_to_json(${c})::text` },
};

const PAYLOAD_TYPES = Object.keys(TYPES);

/** An output column passing source column `c` through (possibly renamed). */
function plainColumn(c, out) {
  const t = TYPES[c.type];
  return { out, rule: c.name, client: t.client, norm: t.norm, canon: (edition) => t.canon(c.name, edition) };
}

/**
 * An output column computed from source column `c` by a function of the supported subset, with
 * the Postgres expression giving the value the client must hold, as text. Null if none fits.
 */
function computedColumn(rng, c, out) {
  const n = c.name;
  const make = (rule, client, canon, norm = client === 'real' ? 'real' : 'text') => ({ out, rule, client, norm, canon });
  const options = {
    integer: [
      () => make(`${n} + 1`, 'integer', () => `(${n} + 1)::text`),
      () => make(`${n} * 3`, 'integer', () => `(${n} * 3)::text`),
      () => make(`${n} / 2`, 'integer', () => `(${n} / 2)::text`),
      () => make(`CAST(${n} AS real)`, 'real', () => `${n}::float8::text`),
      () => make(`typeof(${n})`, 'text', () => `CASE WHEN ${n} IS NULL THEN 'null' ELSE 'integer' END`),
      () => make(`ifnull(${n}, -1)`, 'integer', () => `coalesce(${n}, -1)::text`),
    ],
    bigint: [
      () => make(`CAST(${n} AS text)`, 'text', () => `${n}::text`),
      () => make(`typeof(${n})`, 'text', () => `CASE WHEN ${n} IS NULL THEN 'null' ELSE 'integer' END`),
    ],
    real: [
      () => make(`${n} * 2`, 'real', () => `(${n} * 2)::text`),
      () => make(`typeof(${n})`, 'text', () => `CASE WHEN ${n} IS NULL THEN 'null' ELSE 'real' END`),
    ],
    double: [
      () => make(`${n} + 0.5`, 'real', () => `(${n} + 0.5)::text`),
      () => make(`typeof(${n})`, 'text', () => `CASE WHEN ${n} IS NULL THEN 'null' ELSE 'real' END`),
    ],
    boolean: [
      () => make(`iif(${n}, 'yes', 'no')`, 'text', () => `CASE WHEN ${n} THEN 'yes' ELSE 'no' END`),
      () => make(`typeof(${n})`, 'text', () => `CASE WHEN ${n} IS NULL THEN 'null' ELSE 'integer' END`),
    ],
    text: [
      () => make(`${n} || '!'`, 'text', () => `${n} || '!'`),
      () => make(`length(${n})`, 'integer', () => `length(${n})::text`),
      () => make(`substring(${n}, 2, 3)`, 'text', () => `substr(${n}, 2, 3)`),
      () => make(`ifnull(${n}, 'none')`, 'text', () => `coalesce(${n}, 'none')`),
      () => make(`instr(${n}, 'a')`, 'integer', () => `strpos(${n}, 'a')::text`),
    ],
    numeric: [() => make(`typeof(${n})`, 'text', () => `CASE WHEN ${n} IS NULL THEN 'null' ELSE 'text' END`)],
    timestamptz: [
      () => make(`unixepoch(${n})`, 'integer', () => `floor(extract(epoch FROM ${n}))::bigint::text`),
      () => make(`datetime(${n})`, 'text', () => `to_char(${n} AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')`),
    ],
    date: [() => make(`datetime(${n})`, 'text', () => `to_char(${n}, 'YYYY-MM-DD') || ' 00:00:00'`)],
    text_array: [() => make(`json_array_length(${n})`, 'integer', () => `cardinality(${n})::text`)],
  }[c.type];
  return options ? rng.pick(options)() : null;
}

/** Text values, including ones that need quoting in SQL and YAML. */
const WORDS = ['alpha', 'beta', 'gamma', "it's", 'ünï', '😀 x', '', 'b"q', 'a: b #c', 'back\\slash'];
const DATA_ONLY_WORDS = ['line\nbreak'];
const TEAMS = ['red', 'blue', 'green'];

export const sqlString = (s) => `'${s.replace(/'/g, "''")}'`;
/** A single-quoted YAML scalar (no escapes; `'` doubled). */
const yamlString = (s) => `'${s.replace(/'/g, "''")}'`;

export class Model {
  constructor(seed) {
    this.seed = seed;
    const rng = new Rng(seed);
    this.rng = rng;
    this.edition = rng.bool(0.5) ? 2 : 1;
    this.groupType = rng.bool(0.5) ? 'text' : 'integer';
    this.groups = this.groupType === 'text' ? ['g0', 'g1', 'g2', 'g3'] : [1, 2, 3, 4];
    const nUsers = rng.int(3, 4);
    // Token claims: `parameters.team` (token_parameters.team) and a `groups` array (json_each).
    this.users = Array.from({ length: nUsers }, (_, i) => ({
      id: `u${i}`,
      team: rng.pick(TEAMS),
      groups: rng.subset(this.groups, rng.int(0, 2)),
      // Client parameters (`request.parameters()`, untrusted): sent by db.connect({ params }).
      clientTeam: rng.pick(TEAMS),
    }));
    this.membershipActive = rng.bool(0.5);

    // Source tables: id (text or uuid), the key columns the rules use, random payload columns.
    const nTables = rng.int(2, 4);
    this.tables = [];
    for (let i = 0; i < nTables; i++) {
      const payload = rng.subset(PAYLOAD_TYPES, rng.int(2, 5)).map((type, j) => ({ name: `c${j}_${type}`, type }));
      this.tables.push({
        name: `t${i}`,
        idType: rng.bool(0.3) ? 'uuid' : 'text',
        cols: [
          { name: 'owner', type: 'text', key: 'owner' },
          { name: 'grp', type: this.groupType, key: 'grp' },
          { name: 'team', type: 'text', key: 'team' },
          ...(this.groupType === 'text' ? [{ name: 'tags', type: 'text_array', key: 'tags' }] : []),
          ...payload,
        ],
      });
    }
    this.memberships = {
      name: 'memberships',
      idType: 'text',
      cols: [
        { name: 'user_id', type: 'text', key: 'user' },
        { name: 'grp', type: this.groupType, key: 'grp' },
        { name: 'active', type: 'boolean', key: 'active' },
      ],
    };

    // Output tables: one or two projections of each source table, with column subsets and aliases.
    this.outputs = [];
    for (const table of this.tables) {
      const n = rng.bool(0.4) ? 2 : 1;
      for (let k = 0; k < n; k++) {
        const renamed = k > 0 || rng.bool(0.4);
        this.outputs.push(this.projection(table, renamed ? `${table.name}_v${k}` : table.name));
      }
    }
    const memberOutput = rng.bool(0.7) ? this.projection(this.memberships, rng.bool(0.5) ? 'memberships' : 'my_groups') : null;
    if (memberOutput) this.outputs.push(memberOutput);

    // Bucket definitions.
    const kinds = ['user', 'group'];
    if (rng.bool(0.75)) kinds.push('global');
    if (rng.bool(0.6)) kinds.push('team');
    for (const extra of ['claim_groups', 'user_team', 'jwt_team', 'user_if_team', 'group_pair', 'client_param']) {
      if (rng.bool(0.3)) kinds.push(extra);
    }
    if (this.groupType === 'text' && rng.bool(0.5)) kinds.push('group_tags');
    if (rng.bool(0.3)) kinds.push(rng.pick(['user', 'global', 'group']));
    this.teamCondition = rng.pick(TEAMS);
    this.defs = kinds.map((kind, i) => ({ name: `${kind}_${i}`, kind, queries: [] }));
    for (const output of this.outputs) {
      if (output === memberOutput) continue;
      for (const def of rng.subset(this.defs, rng.int(1, 2))) {
        def.queries.push({ output, filter: rng.bool(0.65) ? this.filter(output.table) : null });
      }
    }
    if (memberOutput) {
      const def = this.defs.find((d) => d.kind === 'user');
      def.queries.push({ output: memberOutput, filter: rng.bool(0.3) ? this.filter(this.memberships) : null });
    }
    for (const def of this.defs) {
      if (!def.queries.length) {
        const output = rng.pick(this.outputs.filter((o) => o !== memberOutput));
        def.queries.push({ output, filter: this.filter(output.table) });
      }
    }

    this.ids = new Map([...this.tables, this.memberships].map((t) => [t.name, { live: [], deleted: [] }]));
    this.nextId = 0;
  }

  projection(table, name) {
    const rng = this.rng;
    if (rng.bool(0.35)) {
      return { name, table, star: true, cols: table.cols.map((c) => plainColumn(c, c.name)) };
    }
    const chosen = rng.subset(table.cols, rng.int(1, table.cols.length));
    const cols = chosen.map((c) => plainColumn(c, rng.bool(0.3) ? `${c.name}_as` : c.name));
    if (rng.bool(0.5)) {
      for (const [i, c] of rng.subset(table.cols, rng.int(1, 2)).entries()) {
        const e = computedColumn(rng, c, `e${i}_${c.name}`);
        if (e) cols.push(e);
      }
    }
    return { name, table, star: false, cols };
  }

  // --- rules ----------------------------------------------------------------------------------

  /**
   * One filter atom on a column of `table`: `{ r, p }`, the same condition in sync rules (SQLite
   * semantics over the synced values) and in Postgres (over the source columns).
   */
  atom(table) {
    const rng = this.rng;
    const col = rng.pick(table.cols);
    const c = col.name;
    const same = (sql) => ({ r: sql, p: sql });
    if (rng.bool(0.12)) return same(`${c} ${rng.bool(0.5) ? 'IS NULL' : 'IS NOT NULL'}`);
    const cmp = () => rng.pick(['=', '!=', '<>', '<', '>', '<=', '>=']);
    const fancy = rng.bool(0.4);
    switch (col.type) {
      case 'integer': {
        const k = rng.int(-5, 20);
        if (fancy) {
          switch (rng.int(0, 6)) {
            case 0:
              return same(`${c} + ${rng.int(-3, 3)} ${cmp()} ${k}`);
            case 1:
              return same(`${c} * 2 ${cmp()} ${k}`);
            case 2:
              // Integer division truncates toward zero in both.
              return same(`${c} / 3 ${cmp()} ${rng.int(-2, 6)}`);
            case 3:
            {
              const op = cmp();
              return { r: `ifnull(${c}, 0) ${op} ${k}`, p: `coalesce(${c}, 0) ${op} ${k}` };
            }
            case 4:
              return { r: `CAST(${c} AS text) = '${k}'`, p: `${c}::text = '${k}'` };
            case 5: {
              const not = rng.bool(0.5);
              return { r: `${c} IS ${not ? 'NOT ' : ''}${k}`, p: `${c} IS ${not ? '' : 'NOT '}DISTINCT FROM ${k}` };
            }
            default: {
              const op = cmp();
              return { r: `iif(${c} ${op} ${k}, 1, 0) = 1`, p: `(CASE WHEN ${c} ${op} ${k} THEN 1 ELSE 0 END) = 1` };
            }
          }
        }
        if (rng.bool(0.3)) return same(`${c} IN (${[0, 1, 2].map(() => rng.int(-5, 20)).join(', ')})`);
        return same(`${c} ${cmp()} ${k}`);
      }
      case 'bigint': {
        // Exact beyond 2^53: 9007199254740993 must not compare equal to 9007199254740992.
        const k = rng.bool(0.4) ? rng.pick(['9007199254740992', '9007199254740993', '-9007199254740992']) : String(rng.int(-5, 20));
        if (fancy) {
          if (rng.bool(0.5)) return { r: `CAST(${c} AS text) = '${k}'`, p: `${c}::text = '${k}'` };
          const not = rng.bool(0.5);
          return { r: `${c} IS ${not ? 'NOT ' : ''}${k}`, p: `${c} IS ${not ? '' : 'NOT '}DISTINCT FROM ${k}` };
        }
        if (rng.bool(0.3)) return same(`${c} IN (${k}, ${rng.int(-5, 20)})`);
        return same(`${c} ${cmp()} ${k}`);
      }
      case 'real':
      case 'double':
        if (fancy) return same(`${c} * 2 + 0.5 ${cmp()} ${rng.int(-40, 40) / 4}`);
        return same(`${c} ${cmp()} ${rng.int(-40, 40) / 4}`);
      case 'boolean':
        if (fancy) {
          const v = rng.pick(['true', 'false']);
          const not = rng.bool(0.5);
          return { r: `${c} IS ${not ? 'NOT ' : ''}${v}`, p: `${c} IS ${not ? 'NOT ' : ''}${v.toUpperCase()}` };
        }
        return same(`${c} ${rng.pick(['=', '!='])} ${rng.pick(['true', 'false'])}`);
      case 'text': {
        const values =
          col.key === 'owner' || col.key === 'user'
            ? [...this.users.map((u) => u.id), 'nobody']
            : col.key === 'team'
              ? TEAMS
              : col.key === 'grp'
                ? this.groups
                : WORDS;
        const v = rng.pick(values);
        if (fancy) {
          switch (rng.int(0, 5)) {
            case 0:
              return same(`${c} || 'x' = ${sqlString(`${v}x`)}`);
            case 1:
              return same(`length(${c}) ${cmp()} ${rng.int(0, 6)}`);
            case 2:
              // ASCII only: upper() of other letters differs between SQLite, JS and Postgres locales.
              return same(`upper(${c}) = ${sqlString((/^[\x20-\x7e]*$/.test(String(v)) ? String(v) : 'alpha').toUpperCase())}`);
            case 3:
            {
              const [op, n] = [cmp(), rng.int(0, 3)];
              return { r: `instr(${c}, 'a') ${op} ${n}`, p: `strpos(${c}, 'a') ${op} ${n}` };
            }
            case 4:
              return { r: `substring(${c}, 1, 2) = ${sqlString(String(v).slice(0, 2))}`, p: `substr(${c}, 1, 2) = ${sqlString(String(v).slice(0, 2))}` };
            default: {
              // Binary (code point) order in SQLite; the "C" collation in Postgres.
              const op = rng.pick(['<', '>', '<=', '>=']);
              return { r: `${c} ${op} ${sqlString(String(v))}`, p: `${c} COLLATE "C" ${op} ${sqlString(String(v))}` };
            }
          }
        }
        if (rng.bool(0.3)) return same(`${c} IN (${rng.subset(values, 2).map(sqlString).join(', ')})`);
        return same(`${c} ${rng.pick(['=', '!=', '<>'])} ${sqlString(v)}`);
      }
      case 'numeric': {
        // Synced as text: compared as text, and any text sorts after any number (SQLite).
        if (rng.bool(0.5)) {
          const v = rng.pick(['1.50', '0.000', 'NaN', '12.34']);
          return { r: `${c} = '${v}'`, p: `${c}::text = '${v}'` };
        }
        const op = rng.pick(['>', '<']);
        return { r: `${c} ${op} ${rng.int(-5, 5)}`, p: `(CASE WHEN ${c} IS NULL THEN NULL ELSE ${op === '>' ? 'TRUE' : 'FALSE'} END)` };
      }
      case 'date':
      case 'timestamptz': {
        // Synced as text: compared as text with the literal.
        const lit = sqlString(`${rng.int(1995, 2035)}-${String(rng.int(1, 12)).padStart(2, '0')}-01`);
        const op = cmp();
        return { r: `${c} ${op} ${lit}`, p: `(${TYPES[col.type].canon(c, this.edition)}) COLLATE "C" ${op} ${lit}` };
      }
      case 'jsonb': {
        if (rng.bool(0.5)) {
          const v = rng.pick(WORDS.filter((w) => /^[a-z]+$/.test(w)));
          const key = rng.pick(['a', 'b']);
          return rng.bool(0.5)
            ? { r: `${c} ->> '${key}' = '${v}'`, p: `${c} ->> '${key}' = '${v}'` }
            : { r: `json_extract(${c}, '$.${key}') = '${v}'`, p: `${c} ->> '${key}' = '${v}'` };
        }
        // A JSON number extracted with ->> is a number; a JSON boolean is 1/0; anything else is
        // text (never equal to a number); JSON null and a missing key are NULL.
        const key = rng.pick(['a', 'b', 'n']);
        const k = rng.int(-3, 3);
        const e = `${c} -> '${key}'`;
        return {
          r: `${c} ->> '${key}' = ${k}`,
          p: `(CASE WHEN ${e} IS NULL OR jsonb_typeof(${e}) = 'null' THEN NULL
                    WHEN jsonb_typeof(${e}) = 'number' THEN (${c} ->> '${key}')::numeric = ${k}
                    WHEN jsonb_typeof(${e}) = 'boolean' THEN (CASE WHEN (${c} ->> '${key}')::boolean THEN 1 ELSE 0 END) = ${k}
                    ELSE FALSE END)`,
        };
      }
      case 'text_array': {
        const k = rng.int(0, 3);
        const op = cmp();
        return { r: `json_array_length(${c}) ${op} ${k}`, p: `cardinality(${c}) ${op} ${k}` };
      }
      default:
        return same(`${c} ${rng.bool(0.5) ? 'IS NULL' : 'IS NOT NULL'}`);
    }
  }

  filter(table) {
    const rng = this.rng;
    const join = (a, op, b) => ({ r: `${a.r} ${op} ${b.r}`, p: `${a.p} ${op} ${b.p}` });
    const paren = (a) => ({ r: `(${a.r})`, p: `(${a.p})` });
    let f = this.atom(table);
    if (rng.bool(0.5)) f = join(f, rng.pick(['AND', 'OR']), this.atom(table));
    if (rng.bool(0.3)) f = join(paren(f), rng.pick(['AND', 'OR']), this.atom(table));
    if (rng.bool(0.15)) f = { r: `NOT (${f.r})`, p: `NOT (${f.p})` };
    return f;
  }

  /** The equality a data query of a definition of `kind` uses on `table`. */
  static paramCond(kind, table) {
    switch (kind) {
      case 'user':
        return table.name === 'memberships' ? 'user_id = bucket.uid' : 'owner = bucket.uid';
      case 'group':
      case 'claim_groups':
        return 'grp = bucket.g';
      case 'team':
      case 'jwt_team':
        return 'team = bucket.team';
      case 'user_team':
        return table.name === 'memberships' ? null : 'owner = bucket.uid AND team = bucket.team';
      case 'user_if_team':
        return table.name === 'memberships' ? 'user_id = bucket.uid' : 'owner = bucket.uid';
      case 'group_pair':
        return 'grp = bucket.g AND owner = bucket.u';
      case 'group_tags':
        return 'bucket.g IN tags';
      case 'client_param':
        return 'team = bucket.team';
      default:
        return null;
    }
  }

  parameterQuery(kind) {
    switch (kind) {
      case 'user':
        return 'SELECT request.user_id() AS uid';
      case 'group':
        return `SELECT grp AS g FROM memberships WHERE user_id = request.user_id()${this.membershipActive ? ' AND active = true' : ''}`;
      case 'team':
        return 'SELECT token_parameters.team AS team';
      case 'claim_groups':
        return "SELECT value AS g FROM json_each(request.jwt() ->> 'groups')";
      case 'user_team':
        return 'SELECT request.user_id() AS uid, token_parameters.team AS team';
      case 'jwt_team':
        return "SELECT request.jwt() -> 'parameters' ->> 'team' AS team";
      case 'user_if_team':
        return `SELECT request.user_id() AS uid WHERE token_parameters.team = ${sqlString(this.teamCondition)}`;
      case 'group_pair':
        return 'SELECT grp AS g, user_id AS u FROM memberships WHERE user_id = request.user_id()';
      case 'group_tags':
        return `SELECT grp AS g FROM memberships WHERE user_id = request.user_id()${this.membershipActive ? ' AND active = true' : ''}`;
      case 'client_param':
        return "SELECT request.parameters() ->> 'team' AS team";
      default:
        return null;
    }
  }

  static selectList(output) {
    if (output.star) return '*';
    return ['id', ...output.cols.map((c) => (c.out === c.rule ? c.rule : `${c.rule} AS ${c.out}`))].join(', ');
  }

  dataQuery(kind, { output, filter }) {
    const from = output.name === output.table.name ? output.table.name : `${output.table.name} AS ${output.name}`;
    const conds = [Model.paramCond(kind, output.table), filter && `(${filter.r})`].filter(Boolean);
    return `SELECT ${Model.selectList(output)} FROM ${from}${conds.length ? ` WHERE ${conds.join(' AND ')}` : ''}`;
  }

  rulesYaml() {
    const lines = [];
    if (this.edition >= 2) lines.push('config:', `  edition: ${this.edition}`);
    lines.push('bucket_definitions:');
    for (const def of this.defs) {
      lines.push(`  ${def.name}:`);
      if (def.kind === 'client_param') lines.push('    accept_potentially_dangerous_queries: true');
      const pq = this.parameterQuery(def.kind);
      if (pq) lines.push(`    parameters: ${yamlString(pq)}`);
      lines.push('    data:');
      for (const q of def.queries) lines.push(`      - ${yamlString(this.dataQuery(def.kind, q))}`);
    }
    return `${lines.join('\n')}\n`;
  }

  // --- oracle -----------------------------------------------------------------------------------

  /**
   * Per output table: plain SQL over the source giving the rows a user must hold, every value as
   * text in the form the client holds it. `$1` = user id, `$2` = the token's team claim.
   */
  oracleQueries() {
    const result = [];
    for (const output of this.outputs) {
      const parts = [];
      for (const def of this.defs) {
        for (const q of def.queries) {
          if (q.output !== output) continue;
          const conds = [];
          switch (def.kind) {
            case 'user':
              conds.push(output.table.name === 'memberships' ? 'user_id = $1::text' : 'owner = $1::text');
              break;
            case 'group':
              conds.push(
                `grp IN (SELECT m.grp FROM memberships m WHERE m.user_id = $1::text${this.membershipActive ? ' AND m.active = true' : ''})`,
              );
              break;
            case 'team':
            case 'jwt_team':
              conds.push('team = $2::text');
              break;
            case 'claim_groups':
              conds.push('grp::text IN (SELECT jsonb_array_elements_text($3::jsonb))');
              break;
            case 'user_team':
              conds.push('owner = $1::text AND team = $2::text');
              break;
            case 'user_if_team':
              conds.push(output.table.name === 'memberships' ? 'user_id = $1::text' : 'owner = $1::text');
              conds.push(`$2::text = ${sqlString(this.teamCondition)}`);
              break;
            case 'group_pair':
              conds.push('owner = $1::text AND grp IN (SELECT m.grp FROM memberships m WHERE m.user_id = $1::text)');
              break;
            case 'group_tags':
              conds.push(
                `EXISTS (SELECT 1 FROM memberships m WHERE m.user_id = $1::text${this.membershipActive ? ' AND m.active = true' : ''} AND m.grp = ANY(tags))`,
              );
              break;
            case 'client_param':
              conds.push('team = $4::text');
              break;
            default:
          }
          if (q.filter) conds.push(`(${q.filter.p})`);
          const select = ['id::text AS id', ...output.cols.map((c) => `${c.canon(this.edition)} AS ${c.out}`)];
          parts.push(`SELECT ${select.join(', ')} FROM ${output.table.name}${conds.length ? ` WHERE ${conds.join(' AND ')}` : ''}`);
        }
      }
      // Placeholders must all appear for Postgres to type them; `$2` may be unused otherwise.
      const sql = parts.length
        ? `SELECT * FROM (${parts.join('\nUNION\n')}) q WHERE $1::text IS NOT NULL AND $2::text IS NOT NULL AND $3::jsonb IS NOT NULL AND $4::text IS NOT NULL`
        : null;
      result.push({ output, sql });
    }
    return result;
  }

  // --- schema, rows, changes ----------------------------------------------------------------------

  schemaSql() {
    return [...this.tables, this.memberships]
      .map(
        (t) =>
          `CREATE TABLE ${t.name} (id ${t.idType} PRIMARY KEY, ${t.cols
            .map((c) => `${c.name} ${TYPES[c.type].pg}${t.name === 'memberships' ? ' NOT NULL' : ''}`)
            .join(', ')});`,
      )
      .join('\n');
  }

  newId(table) {
    const ids = this.ids.get(table.name);
    if (ids.deleted.length && this.rng.bool(0.2)) {
      return ids.deleted.splice(this.rng.int(0, ids.deleted.length - 1), 1)[0];
    }
    this.nextId += 1;
    if (table.idType === 'uuid') {
      const h = this.rng.hex(32);
      const u = `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-8${h.slice(17, 20)}-${h.slice(20)}`;
      return this.rng.bool(0.3) ? u.toUpperCase() : u;
    }
    return `r${this.nextId}`;
  }

  /** A SQL literal for a value of column `col`. */
  value(col) {
    const rng = this.rng;
    switch (col.key) {
      case 'owner':
        return rng.bool(0.1) ? 'NULL' : sqlString(rng.pick([...this.users.map((u) => u.id), 'nobody']));
      case 'user':
        return sqlString(rng.pick([...this.users.map((u) => u.id), 'nobody']));
      case 'team':
        return rng.bool(0.1) ? 'NULL' : sqlString(rng.pick(TEAMS));
      case 'grp': {
        if (col.type === this.groupType && rng.bool(0.1) && this.memberships.cols[1] !== col) return 'NULL';
        const g = rng.pick(this.groups);
        return typeof g === 'number' ? String(g) : sqlString(g);
      }
      case 'active':
        return rng.bool(0.7) ? 'true' : 'false';
      case 'tags': {
        if (rng.bool(0.1)) return 'NULL';
        const tags = rng.subset(this.groups, rng.int(0, 2)).map(sqlString);
        if (rng.bool(0.1)) tags.push('NULL');
        return tags.length ? `ARRAY[${tags.join(', ')}]::text[]` : `'{}'::text[]`;
      }
      default:
    }
    if (rng.bool(0.15)) return 'NULL';
    switch (col.type) {
      case 'text':
        return sqlString(rng.pick([...WORDS, ...DATA_ONLY_WORDS]));
      case 'integer':
        return String(rng.int(-5, 20));
      case 'bigint':
        return rng.bool(0.3)
          ? rng.pick(['9007199254740993', '-9223372036854775808', '9223372036854775807', '-9007199254740993'])
          : String(rng.int(-5, 20));
      case 'boolean':
        return rng.bool(0.5) ? 'true' : 'false';
      case 'numeric':
        return rng.bool(0.3)
          ? `${rng.pick(['18014398509481982123.000001', '-0.000', '1.50', 'NaN'])}`.replace(/^(.*)$/, "'$1'::numeric")
          : `${rng.int(-99, 99)}.${String(rng.int(0, 99)).padStart(2, '0')}`;
      case 'real':
      case 'double':
        return String(rng.int(-40, 40) / 4);
      case 'uuid': {
        const h = rng.hex(32);
        const u = `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
        return sqlString(rng.bool(0.3) ? u.toUpperCase() : u);
      }
      case 'jsonb': {
        const obj = {};
        for (const k of rng.subset(['a', 'b', 'nested', 'n'], rng.int(0, 3))) {
          obj[k] = rng.pick([rng.int(-3, 3), rng.pick(WORDS), true, null, [1, 'x'], { y: rng.int(0, 9) }, 2.5]);
        }
        return `${sqlString(JSON.stringify(rng.bool(0.1) ? [obj] : obj))}::jsonb`;
      }
      case 'timestamptz': {
        const pad = (n, w = 2) => String(n).padStart(w, '0');
        const frac = rng.pick(['', `.${pad(rng.int(0, 999), 3)}`, `.${pad(rng.int(0, 999999), 6)}`, '.120000']);
        const tz = rng.pick(['+00', '+02', '-05:30', '+13:45', 'Z']);
        return `'${rng.int(1990, 2040)}-${pad(rng.int(1, 12))}-${pad(rng.int(1, 28))} ${pad(rng.int(0, 23))}:${pad(rng.int(0, 59))}:${pad(rng.int(0, 59))}${frac}${tz}'::timestamptz`;
      }
      case 'date': {
        const pad = (n) => String(n).padStart(2, '0');
        return `'${rng.int(1990, 2040)}-${pad(rng.int(1, 12))}-${pad(rng.int(1, 28))}'::date`;
      }
      case 'text_array': {
        const n = rng.int(0, 3);
        if (n === 0) return `'{}'::text[]`;
        return `ARRAY[${Array.from({ length: n }, () => (rng.bool(0.15) ? 'NULL' : sqlString(rng.pick(WORDS)))).join(', ')}]::text[]`;
      }
      default:
        throw new Error(`no generator for ${col.type}`);
    }
  }

  insert(table) {
    const id = this.newId(table);
    this.ids.get(table.name).live.push(id);
    const cols = table.cols.filter((c) => c.key || this.rng.bool(0.9));
    return `INSERT INTO ${table.name} (id${cols.map((c) => `, ${c.name}`).join('')}) VALUES (${sqlString(id)}${cols
      .map((c) => `, ${this.value(c)}`)
      .join('')})`;
  }

  pickLive(table) {
    const live = this.ids.get(table.name).live;
    return live.length ? live[this.rng.int(0, live.length - 1)] : null;
  }

  forget(table, id) {
    const ids = this.ids.get(table.name);
    ids.live = ids.live.filter((x) => x !== id);
    ids.deleted.push(id);
  }

  /** Initial rows: statements run before the service starts. */
  initialRows() {
    const stmts = [];
    for (const t of this.tables) for (let i = this.rng.int(10, 30); i > 0; i--) stmts.push(this.insert(t));
    for (let i = this.rng.int(4, 8); i > 0; i--) stmts.push(this.insert(this.memberships));
    return stmts;
  }

  /** One random change statement. */
  change() {
    const rng = this.rng;
    for (;;) {
      const table = rng.bool(0.3) ? this.memberships : rng.pick(this.tables);
      const r = rng.next();
      if (r < 0.02) {
        // TRUNCATE: every row leaves its buckets.
        const ids = this.ids.get(table.name);
        ids.deleted.push(...ids.live);
        ids.live = [];
        return `TRUNCATE ${table.name}`;
      }
      if (r < 0.05) {
        // A bulk insert of 20-60 rows in one statement.
        const n = rng.int(20, 60);
        const cols = table.cols.filter((c) => c.key || rng.bool(0.5));
        const rows = Array.from({ length: n }, () => {
          const id = this.newId(table);
          this.ids.get(table.name).live.push(id);
          return `(${sqlString(id)}${cols.map((c) => `, ${this.value(c)}`).join('')})`;
        });
        return `INSERT INTO ${table.name} (id${cols.map((c) => `, ${c.name}`).join('')}) VALUES ${rows.join(', ')}`;
      }
      if (r < 0.1) {
        // A bulk update selected by a key column (moves many rows between buckets at once).
        const key = rng.pick(table.cols.filter((c) => c.key));
        const set = rng.subset(table.cols, rng.int(1, 2));
        const v = this.value(key);
        return `UPDATE ${table.name} SET ${set.map((c) => `${c.name} = ${this.value(c)}`).join(', ')} WHERE ${key.name} ${v === 'NULL' ? 'IS NULL' : `= ${v}`}`;
      }
      if (r < 0.3) return this.insert(table);
      const id = this.pickLive(table);
      if (id == null) continue;
      if (r < 0.45) {
        this.forget(table, id);
        return `DELETE FROM ${table.name} WHERE id = ${sqlString(id)}`;
      }
      if (r < 0.5 && table !== this.memberships) {
        // A primary-key change: a REMOVE of the old id and a PUT of the new one.
        this.forget(table, id);
        const fresh = this.newId(table);
        this.ids.get(table.name).live.push(fresh);
        return `UPDATE ${table.name} SET id = ${sqlString(fresh)} WHERE id = ${sqlString(id)}`;
      }
      const cols = rng.subset(table.cols, rng.int(1, Math.min(3, table.cols.length)));
      return `UPDATE ${table.name} SET ${cols.map((c) => `${c.name} = ${this.value(c)}`).join(', ')} WHERE id = ${sqlString(id)}`;
    }
  }

  /** `nBatches` batches of transactions, each a list of statements. */
  changeBatches(nBatches) {
    return Array.from({ length: nBatches }, () =>
      Array.from({ length: this.rng.int(3, 8) }, () => Array.from({ length: this.rng.int(1, 6) }, () => this.change())),
    );
  }
}
