// Type round trip with the official client: every Postgres type of docs/protocol.md §8.2, with
// edge values, arrives in the client's local SQLite as the golden table says (the same table as
// `crates/riptide-replication/tests/types.rs`), both from the initial snapshot and from live
// streaming, in the legacy format (edition 1) and the edition-2 format (ISO-8601 timestamps,
// `custom_types` domains).
import assert from 'node:assert/strict';
import { PowerSyncDatabase, Schema, Table, column } from '@powersync/node';
import { e2eTest } from '../lib/harness.js';
import { BufferLogger, PgConnector } from '../lib/client.js';
import { withDeadline, waitFor } from '../lib/wait.js';

// [pg type, SQL literal, legacy value, edition-2 value (omitted: same)]. Values are what the
// client's SQLite returns: numbers for integer/real columns, strings for text columns, null.
// bytea is not synced by `SELECT *` (blobs are dropped from output), so it arrives as null.
/** A value SQLite holds as REAL (integral reals included). */
const real = (value) => ({ real: value });

const GOLDEN = [
  ['bool', 'true', 1],
  ['bool', 'false', 0],
  ['int2', '-32768', -32768],
  ['int4', '2147483647', 2147483647],
  ['int8', '9007199254740993', 9007199254740993n],
  ['int8', '-9223372036854775808', -9223372036854775808n],
  ['oid', '4294967295', 4294967295],
  ['float4', '1.25', real(1.25)],
  ['float8', '1e308', real(1e308)],
  ['numeric', '18014398509481982123.000001', '18014398509481982123.000001'],
  ['numeric(10,2)', '1.5', '1.50'],
  ['numeric', "'NaN'", 'NaN'],
  ['money', '1000.5', '$1,000.50'],
  ['text', "'héllo ''quoted'' \\ back'", "héllo 'quoted' \\ back"],
  ['varchar(10)', "''", ''],
  ['char(4)', "'ab'", 'ab  '],
  ['uuid', "'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11'", 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'],
  ['json', `'{"test": "thing" }'`, '{"test": "thing" }'],
  ['jsonb', `'{"b": 1, "a": 18014398509481982123}'`, '{"a": 18014398509481982123, "b": 1}'],
  ['jsonpath', "'$.a[*] ? (@ > 1)'", '$."a"[*]?(@ > 1)'],
  ['bytea', "'\\x00ff10'", null],
  ['date', "'2024-05-01'", '2024-05-01'],
  ['date', "'infinity'", '9999-12-31'],
  ['date', "'-infinity'", '0000-01-01'],
  ['time', "'17:42:01.12'", '17:42:01.12', '17:42:01.120000'],
  ['time', "'allballs'", '00:00:00', '00:00:00.000000'],
  ['timetz', "'13:45:10+02'", '13:45:10+02'],
  ['timestamp', "'2023-03-06 15:47:12.4'", '2023-03-06 15:47:12.4', '2023-03-06T15:47:12.400000'],
  ['timestamp', "'epoch'", '1970-01-01 00:00:00', '1970-01-01T00:00:00.000000'],
  ['timestamp', "'infinity'", '9999-12-31 23:59:59', '9999-12-31T23:59:59'],
  ['timestamp', "'-infinity'", '0000-01-01 00:00:00', '0000-01-01T00:00:00'],
  ['timestamptz', "'2023-03-06 15:47+02'", '2023-03-06 13:47:00Z', '2023-03-06T13:47:00.000000Z'],
  ['timestamptz', "'2023-03-06 15:47:00.12345-05:30'", '2023-03-06 21:17:00.12345Z', '2023-03-06T21:17:00.123450Z'],
  ['timestamptz', "'0022-02-03 12:13:14+03'", '0022-02-03 09:13:14Z', '0022-02-03T09:13:14.000000Z'],
  ['timestamptz', "'10022-02-03 12:13:14+03'", null],
  ['timestamptz', "'infinity'", '9999-12-31 23:59:59Z', '9999-12-31T23:59:59Z'],
  ['timestamptz', "'-infinity'", '0000-01-01 00:00:00Z', '0000-01-01T00:00:00Z'],
  ['interval', "'1 year 2 mons 3 days 04:05:06.5'", '1 year 2 mons 3 days 04:05:06.5'],
  ['pg_lsn', "'16/B374D848'", '00000016/B374D848'],
  ['inet', "'127.0.0.1'", '127.0.0.1'],
  ['bool[]', "'{t,f,NULL}'", '[1,0,null]'],
  ['int8[]', "'{9007199254740993,NULL}'", '[9007199254740993,null]'],
  ['int4[][]', "'{{1,2},{3,4}}'", '[[1,2],[3,4]]'],
  ['int4[]', "'[0:1]={5,6}'", '[5,6]'],
  ['int4[]', "'{}'", '[]'],
  ['float8[]', "'{1.5,NaN,Infinity,314}'", '[1.5,null,null,314]'],
  ['numeric[]', "'{1.10,2}'", '["1.10","2"]'],
  ['text[]', `ARRAY['text', '}te][xt{"', NULL, 'NULL', 'null']`, '["text","}te][xt{\\"",null,"NULL","null"]'],
  ['text[][]', "ARRAY[['one', '1'], ['three', NULL]]", '[["one","1"],["three",null]]'],
  ['uuid[]', "'{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}'", '["a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"]'],
  [
    'jsonb[]',
    `ARRAY['{"n": 18014398509481982123, "f": 5.0}'::jsonb, NULL]`,
    '[{"f": 5.0, "n": 18014398509481982123},null]',
  ],
  ['json[]', `ARRAY['{"test": "}te][xt{"}'::json]`, '[{"test": "}te][xt{"}]'],
  ['bytea[]', `'{"\\\\x01"}'`, '[null]'],
  ['date[]', "'{2023-03-06,infinity}'", '["2023-03-06","9999-12-31"]'],
  ['time[]', "'{15:47}'", '["15:47:00"]', '["15:47:00.000000"]'],
  ['timestamp[]', "ARRAY['2023-03-06 15:47'::timestamp]", '["2023-03-06 15:47:00"]', '["2023-03-06T15:47:00.000000"]'],
  [
    'timestamptz[]',
    "ARRAY['2023-03-06 15:47+02'::timestamptz, '2023-03-06 15:47:00.12345+02']",
    '["2023-03-06 13:47:00Z","2023-03-06 13:47:00.12345Z"]',
    '["2023-03-06T13:47:00.000000Z","2023-03-06T13:47:00.123450Z"]',
  ],
  ['interval[]', `'{"1 hour"}'`, '["01:00:00"]'],
  ['pg_lsn[]', "'{16/B374D848}'", '["00000016/B374D848"]'],
  ['money[]', "'{1.5}'", '["$1.50"]'],
  ['mood', "'happy'", 'happy'],
  ['mood[]', "'{sad,NULL}'", '["sad",null]'],
  ['rating', '1', '1', real(1)],
  ['rating[]', "'{1,2.5}'", '["1","2.5"]', '[1,2.5]'],
  ['pair', "ROW(ARRAY[2,3], 'bar')", '("{2,3}",bar)'],
  ['int4range', "'[1,5)'", '[1,5)'],
  ['int4range[]', `'{"[1,5)",empty}'`, '["[1,5)","empty"]'],
  ['tstzrange', "'[2024-01-01 00:00+00,)'", '["2024-01-01 00:00:00+00",)'],
  ['nonneg', '7', '7', 7],
];

const expectedFor = (edition, c) => (edition >= 2 && c.length > 3 ? c[3] : c[2]);

/** The client column type that holds the expected value as the golden table states it. */
function clientColumn(value) {
  if (value !== null && typeof value === 'object') return column.real;
  if (typeof value === 'bigint' || Number.isInteger(value)) return column.integer;
  return column.text;
}

async function roundTrip(ctx, edition) {
  const { source } = await ctx.databases();
  const cols = GOLDEN.map((c, i) => `c${i} ${c[0]}`);
  const literals = GOLDEN.map((c) => c[1]);
  await source.query(`
    SET TimeZone = 'Pacific/Chatham';
    CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
    CREATE DOMAIN rating AS float8 CHECK (VALUE BETWEEN 0 AND 5);
    CREATE DOMAIN nonneg AS int4 CHECK (VALUE >= 0);
    CREATE TYPE pair AS (foo int4[], bar text);
    CREATE TABLE golden (id text PRIMARY KEY, ${cols.join(', ')});
    INSERT INTO golden VALUES ('snapshot', ${literals.join(', ')});
  `);

  const rules = `${edition >= 2 ? 'config:\n  edition: 2\n' : ''}bucket_definitions:
  global:
    data:
      - SELECT * FROM golden
`;
  const service = await ctx.startService({ rules });
  const columns = {};
  GOLDEN.forEach((c, i) => {
    columns[`c${i}`] = clientColumn(expectedFor(edition, c));
  });
  const logger = new BufferLogger(`types-e${edition}`);
  const db = new PowerSyncDatabase({
    schema: new Schema({ golden: new Table(columns) }),
    database: { dbFilename: `types-e${edition}.sqlite`, dbLocation: ctx.dir },
    logger,
  });
  await db.init();
  // Registered so the harness closes it and reports its log.
  ctx.clients.push({ name: `types-e${edition}`, db, logger });
  const connector = new PgConnector({
    endpoint: service.endpoint,
    getToken: () => ctx.token('u1'),
    sourcePool: source,
  });
  await db.connect(connector, { retryDelayMs: 250 });
  await withDeadline(db.waitForFirstSync(), 30_000, 'waitForFirstSync');

  await source.query(`INSERT INTO golden VALUES ('stream', ${literals.join(', ')})`);
  await waitFor(async () => (await db.getAll(`SELECT id FROM golden WHERE id = 'stream'`)).length === 1 || null, {
    timeoutMs: 15_000,
    what: 'the streamed golden row to reach the client',
  });

  // Exactly what SQLite holds: the storage class and the value as text (exact for int8).
  const select = GOLDEN.map((_, i) => `typeof(c${i}) AS t${i}, CAST(c${i} AS TEXT) AS v${i}, c${i} AS n${i}`);
  const failures = [];
  for (const id of ['snapshot', 'stream']) {
    const row = await db.get(`SELECT ${select.join(', ')} FROM golden WHERE id = ?`, [id]);
    GOLDEN.forEach((c, i) => {
      const expected = expectedFor(edition, c);
      const [type, text, value] = [row[`t${i}`], row[`v${i}`], row[`n${i}`]];
      let ok;
      if (expected === null) ok = type === 'null';
      else if (typeof expected === 'object') ok = type === 'real' && value === expected.real;
      else if (typeof expected === 'bigint' || Number.isInteger(expected)) {
        ok = type === 'integer' && text === String(expected);
      } else ok = type === 'text' && text === expected;
      if (!ok) {
        failures.push(`${id} ${c[0]} ${c[1]}: expected ${JSON.stringify(expected, (_, v) => (typeof v === 'bigint' ? String(v) : v))}, got ${type} ${JSON.stringify(text)}`);
      }
    });
  }
  assert.deepEqual(failures, [], failures.join('\n'));
}

e2eTest('type round trip, legacy format (edition 1)', (ctx) => roundTrip(ctx, 1));
e2eTest('type round trip, ISO-8601 and custom types (edition 2)', (ctx) => roundTrip(ctx, 2));
