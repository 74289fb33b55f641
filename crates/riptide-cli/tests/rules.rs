//! `riptide rules check` and `riptide rules explain` through the built binary, against a real
//! Postgres: the user-facing output is what is tested.

use std::path::{Path, PathBuf};
use std::process::Command;

use riptide_testkit::TestDatabase;

const SCHEMA: &str = "
    CREATE TABLE lists (id text PRIMARY KEY, name text NOT NULL, owner_id text NOT NULL);
    CREATE TABLE todos (id text PRIMARY KEY, list_id text NOT NULL, title text);
    CREATE TABLE list_members (id serial PRIMARY KEY, list_id text NOT NULL, user_id text NOT NULL);
    CREATE TABLE secrets (id text PRIMARY KEY, body text);
    CREATE TABLE logs (id text, message text);
    CREATE PUBLICATION powersync FOR TABLE lists, todos, list_members, logs;
    INSERT INTO lists VALUES ('L1', 'Groceries', 'u1'), ('L2', 'Work', 'u3');
    INSERT INTO todos VALUES ('T1', 'L1', 'milk'), ('T2', 'L1', 'bread'), ('T3', 'L2', 'report');
    INSERT INTO list_members (list_id, user_id) VALUES ('L1', 'u2');
";

const RULES: &str = "bucket_definitions:
  user_lists:
    parameters: SELECT request.user_id() AS user_id
    data:
      - SELECT * FROM lists WHERE owner_id = bucket.user_id
  shared_lists:
    priority: 1
    parameters: SELECT list_id FROM list_members WHERE user_id = request.user_id()
    data:
      - SELECT * FROM lists WHERE id = bucket.list_id
      - SELECT id, list_id, title FROM todos WHERE list_id = bucket.list_id
";

struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

fn riptide(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_riptide"))
        .args(args)
        .output()
        .expect("riptide runs");
    Output {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

async fn database() -> TestDatabase {
    let db = TestDatabase::create().await;
    db.client().await.batch_execute(SCHEMA).await.unwrap();
    db
}

#[test]
fn check_without_database_reports_located_errors() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(dir.path(), "good.yaml", RULES);
    let out = riptide(&["rules", "check", good.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(
        out.stdout,
        "ok: 2 bucket definitions, 5 queries, 3 tables\n"
    );

    let bad = write(
        dir.path(),
        "bad.yaml",
        "bucket_definitions:
  user_lists:
    parameters: SELECT request.user_id() AS user_id
    data:
      - SELECT * FROM lists WHERE owner_id = bucket.nope
      - SELECT foo( FROM x
",
    );
    let f = bad.to_str().unwrap();
    let out = riptide(&["rules", "check", f]);
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stdout,
        format!(
            "{f}:5:46: `bucket.nope` is not a parameter of this bucket (known: user_id) (bucket definition `user_lists`)\n\
             {f}:6:26: SQL syntax error: Expected: ), found: x (bucket definition `user_lists`)\n\
             2 errors found\n"
        )
    );

    let out = riptide(&["rules", "check", "/nonexistent/rules.yaml"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("cannot read /nonexistent/rules.yaml"),
        "{}",
        out.stderr
    );
}

#[test]
fn streams_check_and_migrate() {
    let dir = tempfile::tempdir().unwrap();
    let classic = write(dir.path(), "classic.yaml", RULES);
    let out = riptide(&["rules", "migrate", classic.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("config:\n  edition: 3\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("      - \"SELECT lists.* FROM lists WHERE lists.id IN (SELECT list_id FROM list_members WHERE user_id = auth.user_id())\"\n"),
        "{}",
        out.stdout
    );
    let streams = write(dir.path(), "streams.yaml", &out.stdout);
    let f = streams.to_str().unwrap();
    let out = riptide(&["rules", "check", f]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(
        out.stdout,
        "ok: 2 streams, 0 bucket definitions, 5 queries, 3 tables\n"
    );

    let warned = write(
        dir.path(),
        "warned.yaml",
        "config:\n  edition: 3\nstreams:\n  todos:\n    query: SELECT * FROM todos WHERE list_id = subscription.parameter('list')\n",
    );
    let f = warned.to_str().unwrap();
    let out = riptide(&["rules", "check", f]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.starts_with(&format!(
            "{f}:4:3: warning: stream `todos`: clients can send any value"
        )),
        "{}",
        out.stdout
    );
    // Migrating streams again is refused.
    let out = riptide(&["rules", "migrate", f]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stderr.contains("already defines `streams`"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn check_against_the_database() {
    let db = database().await;
    let url = db.url();
    let dir = tempfile::tempdir().unwrap();
    let good = write(dir.path(), "good.yaml", RULES);
    let out = riptide(&["rules", "check", good.to_str().unwrap(), "--database", &url]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(
        out.stdout,
        "ok: 2 bucket definitions, 5 queries, 3 tables (checked against the database)\n"
    );

    let bad = write(
        dir.path(),
        "bad.yaml",
        "bucket_definitions:
  lists:
    data:
      - SELECT * FROM nope
      - SELECT id, titel FROM todos
      - SELECT id, body FROM secrets
      - SELECT id, message FROM logs
",
    );
    let f = bad.to_str().unwrap();
    let out = riptide(&["rules", "check", f, "--database", &url]);
    assert_eq!(out.code, 1, "{}{}", out.stdout, out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines,
        vec![
            format!(
                "{f}:4:9: table public.nope does not exist (data query 1 of bucket definition `lists`)"
            ),
            format!(
                "{f}:5:20: column `titel` does not exist in table public.todos; its columns: id, list_id, title (data query 2 of bucket definition `lists`)"
            ),
            format!(
                "{f}:6:9: table public.secrets is not in publication powersync: run `ALTER PUBLICATION powersync ADD TABLE public.secrets;` (data query 3 of bucket definition `lists`)"
            ),
            format!(
                "{f}:7:9: table public.logs has no primary key, so its updates and deletes cannot be replicated: add a primary key or run `ALTER TABLE public.logs REPLICA IDENTITY FULL;` (data query 4 of bucket definition `lists`)"
            ),
            "4 errors found".to_string(),
        ]
    );

    let out = riptide(&[
        "rules",
        "check",
        f,
        "--database",
        "postgres://nobody@127.0.0.1:1/x",
    ]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("cannot connect to the database"),
        "{}",
        out.stderr
    );
}

fn explain(url: &str, rules: &Path, user: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "rules",
        "explain",
        rules.to_str().unwrap(),
        "--database",
        url,
        "--user",
        user,
    ];
    args.extend_from_slice(extra);
    riptide(&args)
}

#[tokio::test]
async fn explain_with_streams_and_subscriptions() {
    let db = database().await;
    let url = db.url();
    let dir = tempfile::tempdir().unwrap();
    let rules = write(
        dir.path(),
        "streams.yaml",
        "config:
  edition: 3
streams:
  my_lists:
    auto_subscribe: true
    query: SELECT * FROM lists WHERE owner_id = auth.user_id()
  list_todos:
    query: SELECT * FROM todos WHERE list_id = subscription.parameter('list') AND list_id IN (SELECT list_id FROM list_members WHERE user_id = auth.user_id())
",
    );
    // A member subscribed to the shared list, and to a list they are not a member of.
    let out = explain(
        &url,
        &rules,
        "u2",
        &[
            "--subscription",
            r#"list_todos={"list":"L1"}"#,
            "--subscription",
            r#"list_todos={"list":"L2"}"#,
            "--subscription",
            "nope",
            "--row",
            "todos:T1",
        ],
    );
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(
        out.stdout,
        "user 'u2': 2 buckets\n  \
           list_todos|0[\"L1\"]  priority 3  via subscription 1\n  \
           my_lists|0[\"u2\"]    priority 3  via default subscription of my_lists\n  \
           subscription 3 of nope: unknown stream `nope`\n\
         \n\
         row public.todos:T1\n  \
           stream list_todos puts it in list_todos|0[\"L1\"]: GRANTED via subscription 1\n\
         verdict: user 'u2' gets this row through list_todos|0[\"L1\"]\n"
    );
    // Not subscribed: the stream puts the row in a bucket the user does not have.
    let out = explain(&url, &rules, "u2", &["--row", "todos:T3"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .contains("puts it in list_todos|0[\"L2\"], which none of the user's subscriptions")
            && out
                .stdout
                .ends_with("verdict: user 'u2' does not get this row\n"),
        "{}",
        out.stdout
    );
}

#[tokio::test]
async fn explain_buckets_and_rows() {
    let db = database().await;
    let url = db.url();
    let dir = tempfile::tempdir().unwrap();
    let rules = write(dir.path(), "rules.yaml", RULES);

    // The owner: their own bucket, with their list.
    let out = explain(&url, &rules, "u1", &[]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(
        out.stdout,
        "user 'u1': 1 bucket\n  \
           user_lists[\"u1\"]  priority 3  1 row\n\
         rows read: public.list_members (1), public.lists (2), public.todos (3)\n"
    );

    // A member: the shared list's bucket with the list and its two todos.
    let out = explain(&url, &rules, "u2", &[]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert_eq!(
        out.stdout,
        "user 'u2': 2 buckets\n  \
           shared_lists[\"L1\"]  priority 1  3 rows\n  \
           user_lists[\"u2\"]    priority 3  0 rows\n\
         rows read: public.list_members (1), public.lists (2), public.todos (3)\n"
    );

    // A stranger: only an empty bucket of their own.
    let out = explain(&url, &rules, "u9", &[]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .starts_with("user 'u9': 1 bucket\n  user_lists[\"u9\"]  priority 3  0 rows\n"),
        "{}",
        out.stdout
    );

    // A granted row, and why another is not granted.
    let out = explain(&url, &rules, "u2", &["--row", "lists:L1"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let row_part = out.stdout.split_once("\n\n").unwrap().1;
    assert_eq!(
        row_part,
        "row public.lists:L1 (id = 'L1', name = 'Groceries', owner_id = 'u1')\n  \
           data query 1 of user_lists puts it in user_lists[\"u1\"], but the user has no bucket user_lists[\"u1\"]: parameter query 1 (from the token) gives this user user_lists[\"u2\"], not user_lists[\"u1\"]\n  \
           data query 1 of shared_lists puts it in shared_lists[\"L1\"], which the user has (priority 1): GRANTED\n\
         verdict: user 'u2' gets this row through shared_lists[\"L1\"]\n"
    );

    let out = explain(&url, &rules, "u2", &["--row", "public.todos:T3"]);
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    let row_part = out.stdout.split_once("\n\n").unwrap().1;
    assert_eq!(
        row_part,
        "row public.todos:T3 (id = 'T3', list_id = 'L2', title = 'report')\n  \
           data query 2 of shared_lists puts it in shared_lists[\"L2\"], but the user has no bucket shared_lists[\"L2\"]: parameter query 1 needs a list_members row with user_id = 'u2' and list_id = 'L2'\n\
         verdict: user 'u2' does not get this row\n"
    );

    // Token parameters come from the `parameters` claim.
    let by_org = write(
        dir.path(),
        "org.yaml",
        "bucket_definitions:
  by_org:
    parameters: SELECT token_parameters.org AS org
    data:
      - SELECT * FROM lists WHERE owner_id = bucket.org
",
    );
    let out = explain(
        &url,
        &by_org,
        "someone",
        &["--claims", r#"{"parameters": {"org": "u1"}}"#],
    );
    assert_eq!(out.code, 0, "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout
            .starts_with("user 'someone': 1 bucket\n  by_org[\"u1\"]  priority 3  1 row\n"),
        "{}",
        out.stdout
    );

    // Clear errors for bad input.
    let out = explain(&url, &rules, "u2", &["--row", "lists:nope"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr
            .contains("table public.lists has no row with id \"nope\""),
        "{}",
        out.stderr
    );
    let out = explain(&url, &rules, "u2", &["--row", "lists"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("--row must be TABLE:ID"),
        "{}",
        out.stderr
    );
    let out = explain(&url, &rules, "u2", &["--claims", "[1]"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("--claims must be a JSON object"),
        "{}",
        out.stderr
    );
}
