//! `POST /api/sync`: all or nothing, conversion by column type, last-write-wins, idempotent
//! retries, authorisation and every class of bad input.

use serde_json::{Value, json};

use crate::app::{Client, TestApp, entry, new_id};

/// Uploads a new list of `user` with one todo; returns (list id, todo id).
async fn list_with_todo(user: &mut Client, name: &str) -> (String, String) {
    let (list, todo) = (new_id(), new_id());
    let (s, body) = user
        .upload(json!([
            entry("PUT", "lists", &list, json!({"name": name, "owner_id": user.id, "created_at": "2026-11-25T10:00:00.000Z"}), 1),
            entry("PUT", "todos", &todo, json!({"list_id": list, "description": "milk", "completed": 0, "created_by": user.id}), 2),
        ]))
        .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["applied"], 2);
    (list, todo)
}

async fn share(owner: &mut Client, list: &str, member: &Client) -> String {
    let id = new_id();
    let (s, body) = owner
        .upload(json!([entry(
            "PUT",
            "list_members",
            &id,
            json!({"list_id": list, "user_id": member.id}),
            90
        )]))
        .await;
    assert_eq!(s, 200, "{body}");
    id
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_are_converted_by_column_type() {
    let app = TestApp::start().await;
    let mut alice = app.signed_up("alice").await;
    let (list, todo) = list_with_todo(&mut alice, "groceries").await;
    let row = app
        .query_one(&format!(
            "SELECT completed, created_by::text, (SELECT created_at FROM lists WHERE id = '{list}') = '2026-11-25T10:00:00Z'::timestamptz
               FROM todos WHERE id = '{todo}'"
        ))
        .await;
    assert!(!row.get::<_, bool>(0));
    assert_eq!(row.get::<_, String>(1), alice.id);
    assert!(row.get::<_, bool>(2), "timestamps arrive as ISO text");

    let (s, body) = alice
        .upload(json!([entry("PATCH", "todos", &todo, json!({"completed": 1, "completed_at": "2026-11-25T11:00:00Z", "completed_by": alice.id}), 3)]))
        .await;
    assert_eq!((s, body["applied"].as_i64()), (200, Some(1)), "{body}");
    let row = app
        .query_one(&format!(
            "SELECT completed, completed_at IS NOT NULL, description FROM todos WHERE id = '{todo}'"
        ))
        .await;
    assert!(row.get::<_, bool>(0), "1 became true");
    assert!(row.get::<_, bool>(1));
    assert_eq!(
        row.get::<_, String>(2),
        "milk",
        "PATCH leaves other columns alone"
    );

    // PATCH and DELETE of missing rows are not errors; DELETE then removes.
    let (s, body) = alice
        .upload(json!([
            entry(
                "PATCH",
                "todos",
                &new_id(),
                json!({"description": "ghost"}),
                4
            ),
            entry("DELETE", "todos", &new_id(), json!(null), 5),
            entry("DELETE", "lists", &list, json!(null), 6),
        ]))
        .await;
    assert_eq!((s, body["applied"].as_i64()), (200, Some(3)), "{body}");
    assert_eq!(app.count("SELECT count(*) FROM lists").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM todos").await, 0, "cascade");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_is_applied_all_or_nothing() {
    let app = TestApp::start().await;
    let mut alice = app.signed_up("alice").await;
    let bob = app.signed_up("bob").await;
    let list = new_id();
    let alice_id = alice.id.clone();
    let first_two = || {
        vec![
            entry(
                "PUT",
                "lists",
                &list,
                json!({"name": "l", "owner_id": alice_id}),
                1,
            ),
            entry(
                "PUT",
                "todos",
                &new_id(),
                json!({"list_id": list, "description": "a", "completed": 0}),
                2,
            ),
        ]
    };
    let with_third = |third: Value| {
        let mut b = first_two();
        b.push(third);
        Value::Array(b)
    };

    // Third entry has a wrong type (checked before the database).
    let (s, body) = alice
        .upload(with_third(entry(
            "PUT",
            "todos",
            &new_id(),
            json!({"list_id": list, "description": "b", "completed": "yes"}),
            3,
        )))
        .await;
    assert_eq!((s, code(&body)), (400, "invalid_value"), "{body}");
    assert_eq!(body["error"]["entry"], 2);
    assert_eq!(body["error"]["column"], "completed");

    // Third entry is forbidden (found inside the transaction, after two writes).
    let (s, body) = alice
        .upload(with_third(entry(
            "PUT",
            "lists",
            &new_id(),
            json!({"name": "x", "owner_id": bob.id}),
            3,
        )))
        .await;
    assert_eq!((s, code(&body)), (403, "forbidden"), "{body}");
    assert_eq!(body["error"]["entry"], 2);

    // Third entry violates a constraint in Postgres (a member added twice).
    let member = |id: &str| {
        entry(
            "PUT",
            "list_members",
            id,
            json!({"list_id": list, "user_id": bob.id}),
            3,
        )
    };
    let mut batch = first_two();
    batch.push(member(&new_id()));
    batch.push(member(&new_id()));
    let (s, body) = alice.upload(Value::Array(batch)).await;
    assert_eq!((s, code(&body)), (409, "unique_violation"), "{body}");
    assert_eq!(body["error"]["entry"], 3);
    assert_eq!(
        body["error"]["constraint"],
        "list_members_list_id_user_id_key"
    );

    // A todo created_by a missing user no longer reaches Postgres's foreign key: the server
    // sets created_by itself (see `authorship_columns_are_set_by_the_server`).

    assert_eq!(app.count("SELECT count(*) FROM lists").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM todos").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM list_members").await, 0);
    assert_eq!(app.count("SELECT count(*) FROM applied_uploads").await, 0);

    // The same batch without the bad entry goes through.
    let (s, body) = alice.upload(Value::Array(first_two())).await;
    assert_eq!((s, body["applied"].as_i64()), (200, Some(2)), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_write_wins_between_users() {
    let app = TestApp::start().await;
    let mut alice = app.signed_up("alice").await;
    let mut bob = app.signed_up("bob").await;
    let (list, todo) = list_with_todo(&mut alice, "shared").await;
    share(&mut alice, &list, &bob).await;
    let description = || async {
        app.query_one(&format!(
            "SELECT description FROM todos WHERE id = '{todo}'"
        ))
        .await
        .get::<_, String>(0)
    };

    let (s, _) = alice
        .upload(json!([entry(
            "PATCH",
            "todos",
            &todo,
            json!({"description": "from alice"}),
            10
        )]))
        .await;
    assert_eq!(s, 200);
    let (s, body) = bob
        .upload(json!([entry(
            "PATCH",
            "todos",
            &todo,
            json!({"description": "from bob"}),
            1
        )]))
        .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(description().await, "from bob");
    let (s, _) = alice
        .upload(json!([entry(
            "PATCH",
            "todos",
            &todo,
            json!({"description": "alice again"}),
            11
        )]))
        .await;
    assert_eq!(s, 200);
    assert_eq!(description().await, "alice again");
    // A PUT overwrites the columns it carries.
    let (s, _) = bob
        .upload(json!([entry(
            "PUT",
            "todos",
            &todo,
            json!({"list_id": list, "description": "bob put", "completed": 1}),
            2
        )]))
        .await;
    assert_eq!(s, 200);
    assert_eq!(description().await, "bob put");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_batch_changes_nothing() {
    let app = TestApp::start().await;
    let mut alice = app.signed_up("alice").await;
    let mut bob = app.signed_up("bob").await;
    let (list, todo) = list_with_todo(&mut alice, "shared").await;
    share(&mut alice, &list, &bob).await;
    let description = || async {
        app.query_one(&format!(
            "SELECT description FROM todos WHERE id = '{todo}'"
        ))
        .await
        .get::<_, String>(0)
    };

    let batch = json!([
        entry(
            "PATCH",
            "todos",
            &todo,
            json!({"description": "alice's edit"}),
            20
        ),
        entry(
            "PUT",
            "todos",
            &new_id(),
            json!({"list_id": list, "description": "new", "completed": 0}),
            21
        ),
    ]);
    let (s, body) = alice.upload(batch.clone()).await;
    assert_eq!((s, body["applied"].as_i64()), (200, Some(2)));
    // Bob writes after it; then alice's client retries (it never saw the answer).
    bob.upload(json!([entry(
        "PATCH",
        "todos",
        &todo,
        json!({"description": "bob's later edit"}),
        5
    )]))
    .await;
    let (s, body) = alice.upload(batch.clone()).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["applied"], 0);
    assert_eq!(body["already_applied"], true);
    assert_eq!(
        description().await,
        "bob's later edit",
        "the retry did not bring back the old value"
    );
    assert_eq!(app.count("SELECT count(*) FROM todos").await, 2);

    // Key order inside data does not make a retry look new.
    // (serde_json keeps insertion order in this workspace, so this is another byte order.)
    let mut reordered = batch.clone();
    let data = reordered[1]["data"].as_object().unwrap().clone();
    let reversed: serde_json::Map<String, Value> = data.into_iter().rev().collect();
    reordered[1]["data"] = Value::Object(reversed);
    assert_ne!(reordered.to_string(), batch.to_string());
    let (s, body) = alice.upload(reordered).await;
    assert_eq!((s, body["applied"].as_i64()), (200, Some(0)), "{body}");

    // Another device of alice's with the same op ids but other content is applied.
    let (s, body) = alice
        .upload(json!([entry(
            "PATCH",
            "todos",
            &todo,
            json!({"description": "second device"}),
            20
        )]))
        .await;
    assert_eq!((s, body["applied"].as_i64()), (200, Some(1)), "{body}");
    assert_eq!(description().await, "second device");
    // And bob's identical batch is his own, not alice's.
    let (s, body) = bob.upload(batch).await;
    assert_eq!((s, body["applied"].as_i64()), (200, Some(2)), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_write_only_their_own_or_shared_lists() {
    let app = TestApp::start().await;
    let mut alice = app.signed_up("alice").await;
    let mut bob = app.signed_up("bob").await;
    let carol = app.signed_up("carol").await;
    let (list, todo) = list_with_todo(&mut alice, "alice's").await;

    let refusals = [
        ("PATCH", "lists", list.clone(), json!({"name": "mine now"})),
        ("DELETE", "lists", list.clone(), json!(null)),
        (
            "PUT",
            "lists",
            list.clone(),
            json!({"name": "taken", "owner_id": bob.id}),
        ),
        (
            "PATCH",
            "todos",
            todo.clone(),
            json!({"description": "bob was here"}),
        ),
        ("DELETE", "todos", todo.clone(), json!(null)),
        (
            "PUT",
            "todos",
            new_id(),
            json!({"list_id": list, "description": "sneaky"}),
        ),
        (
            "PUT",
            "list_members",
            new_id(),
            json!({"list_id": list, "user_id": bob.id}),
        ),
        // A new list must be owned by its uploader.
        (
            "PUT",
            "lists",
            new_id(),
            json!({"name": "for alice", "owner_id": alice.id}),
        ),
    ];
    for (op, table, id, data) in refusals {
        let (s, body) = bob.upload(json!([entry(op, table, &id, data, 1)])).await;
        assert_eq!((s, code(&body)), (403, "forbidden"), "{op} {table}: {body}");
        assert_eq!(body["error"]["entry"], 0);
        assert!(!body["error"]["message"].as_str().unwrap().is_empty());
    }
    // Alice cannot give her list away either.
    let (s, body) = alice
        .upload(json!([entry(
            "PATCH",
            "lists",
            &list,
            json!({"owner_id": bob.id}),
            5
        )]))
        .await;
    assert_eq!((s, code(&body)), (403, "forbidden"), "{body}");
    let row = app
        .query_one(&format!(
            "SELECT name, owner_id::text FROM lists WHERE id = '{list}'"
        ))
        .await;
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, String>(1)),
        ("alice's".into(), alice.id.clone())
    );

    // Shared with bob (the client's username is replaced by the server's).
    let membership = new_id();
    let (s, body) = alice
        .upload(json!([entry(
            "PUT",
            "list_members",
            &membership,
            json!({"list_id": list, "user_id": bob.id, "username": "admin"}),
            6
        )]))
        .await;
    assert_eq!(s, 200, "{body}");
    let name: String = app
        .query_one(&format!(
            "SELECT username FROM list_members WHERE id = '{membership}'"
        ))
        .await
        .get(0);
    assert_eq!(name, "bob");
    // Bob may now write its todos, but not the list's members nor the list itself.
    let (s, body) = bob
        .upload(json!([entry(
            "PATCH",
            "todos",
            &todo,
            json!({"completed": true}),
            2
        )]))
        .await;
    assert_eq!(s, 200, "{body}");
    let (s, _) = bob
        .upload(json!([entry(
            "PUT",
            "todos",
            &new_id(),
            json!({"list_id": list, "description": "bob's todo"}),
            3
        )]))
        .await;
    assert_eq!(s, 200);
    let (s, body) = bob
        .upload(json!([entry(
            "PUT",
            "list_members",
            &new_id(),
            json!({"list_id": list, "user_id": carol.id}),
            4
        )]))
        .await;
    assert_eq!((s, code(&body)), (403, "forbidden"), "{body}");
    let (s, _) = bob
        .upload(json!([entry(
            "PATCH",
            "lists",
            &list,
            json!({"name": "renamed"}),
            5
        )]))
        .await;
    assert_eq!(s, 403);
    // Bob cannot move a todo to a list he cannot write.
    let (bobs_list, _) = list_with_todo(&mut bob, "bob's").await;
    let (s, body) = alice
        .upload(json!([entry(
            "PATCH",
            "todos",
            &todo,
            json!({"list_id": bobs_list}),
            7
        )]))
        .await;
    assert_eq!((s, code(&body)), (403, "forbidden"), "{body}");
    // Alice adds carol; bob cannot remove carol, but can leave himself.
    let carols = share(&mut alice, &list, &carol).await;
    let (s, _) = bob
        .upload(json!([entry(
            "DELETE",
            "list_members",
            &carols,
            json!(null),
            8
        )]))
        .await;
    assert_eq!(s, 403);
    let (s, body) = bob
        .upload(json!([entry(
            "DELETE",
            "list_members",
            &membership,
            json!(null),
            9
        )]))
        .await;
    assert_eq!(s, 200, "{body}");
    // After leaving, bob's writes are refused again.
    let (s, _) = bob
        .upload(json!([entry(
            "PATCH",
            "todos",
            &todo,
            json!({"completed": false}),
            10
        )]))
        .await;
    assert_eq!(s, 403);
    // The owner removes members.
    let (s, _) = alice
        .upload(json!([entry(
            "DELETE",
            "list_members",
            &carols,
            json!(null),
            11
        )]))
        .await;
    assert_eq!(s, 200);
    assert_eq!(app.count("SELECT count(*) FROM list_members").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_precisely_and_applies_nothing() {
    let app = TestApp::start().await;
    let mut alice = app.signed_up("alice").await;
    let list = new_id();
    let good = entry(
        "PUT",
        "lists",
        &list,
        json!({"name": "l", "owner_id": alice.id}),
        1,
    );
    let cases: Vec<(Value, u16, &str, Option<&str>)> = vec![
        (
            entry("PUT", "no_such_table", &new_id(), json!({}), 2),
            400,
            "unknown_table",
            None,
        ),
        (
            entry("PUT", "users", &new_id(), json!({"username": "x"}), 2),
            400,
            "unknown_table",
            None,
        ),
        (
            entry("PUT", "sessions", &new_id(), json!({}), 2),
            400,
            "unknown_table",
            None,
        ),
        (
            entry("PATCH", "lists", &list, json!({"colour": "red"}), 2),
            400,
            "unknown_column",
            None,
        ),
        (
            entry(
                "PATCH",
                "lists",
                &list,
                json!({"name\"; DROP TABLE users; --": "x"}),
                2,
            ),
            400,
            "unknown_column",
            None,
        ),
        (
            entry(
                "PUT",
                "todos",
                &new_id(),
                json!({"list_id": list, "description": "d", "completed": "true"}),
                2,
            ),
            400,
            "invalid_value",
            Some("completed"),
        ),
        (
            entry(
                "PUT",
                "todos",
                &new_id(),
                json!({"list_id": list, "description": "d", "completed": 2}),
                2,
            ),
            400,
            "invalid_value",
            Some("completed"),
        ),
        (
            entry(
                "PUT",
                "todos",
                &new_id(),
                json!({"list_id": "not-a-uuid", "description": "d"}),
                2,
            ),
            400,
            "invalid_value",
            Some("list_id"),
        ),
        (
            entry(
                "PUT",
                "todos",
                "not-a-uuid",
                json!({"list_id": list, "description": "d"}),
                2,
            ),
            400,
            "invalid_value",
            Some("id"),
        ),
        (
            entry(
                "PUT",
                "todos",
                &new_id(),
                json!({"list_id": list, "description": 42}),
                2,
            ),
            400,
            "invalid_value",
            Some("description"),
        ),
        (
            entry(
                "PUT",
                "todos",
                &new_id(),
                json!({"list_id": list, "description": "d", "created_at": "yesterday-ish"}),
                2,
            ),
            400,
            "invalid_value",
            None,
        ),
        (
            json!({"op": "PUT", "type": "todos", "data": {"description": "no id"}, "op_id": 2}),
            400,
            "missing_id",
            None,
        ),
        (
            json!({"op": "PUT", "type": "todos", "id": "", "data": {}, "op_id": 2}),
            400,
            "missing_id",
            None,
        ),
        (
            json!({"op": "UPSERT", "type": "todos", "id": new_id(), "op_id": 2}),
            400,
            "invalid_entry",
            None,
        ),
        (json!("not an object"), 400, "invalid_entry", None),
        (
            entry("PUT", "todos", &new_id(), json!({"list_id": list}), 2),
            422,
            "not_null_violation",
            Some("description"),
        ),
    ];
    for (bad, status, expected, column) in cases {
        let (s, body) = alice.upload(json!([good.clone(), bad.clone()])).await;
        assert_eq!((s, code(&body)), (status, expected), "{bad}: {body}");
        assert_eq!(body["error"]["entry"], 1, "{body}");
        if let Some(column) = column {
            assert_eq!(body["error"]["column"], column, "{body}");
        }
        assert_eq!(app.count("SELECT count(*) FROM lists").await, 0, "{bad}");
    }

    // Whole-body problems.
    let raw = |body: String| {
        let c = alice.clone();
        async move {
            let mut c = c;
            let req = c
                .request(reqwest::Method::POST, "/api/sync")
                .header("content-type", "application/json")
                .body(body);
            let (s, b, _) = c.send(req).await;
            (s, b)
        }
    };
    let (s, body) = raw("{\"batch\": [".into()).await;
    assert_eq!((s, code(&body)), (400, "malformed_json"), "{body}");
    let (s, body) = raw("{\"entries\": []}".into()).await;
    assert_eq!((s, code(&body)), (400, "invalid_batch"), "{body}");
    let (s, body) = raw("{\"batch\": {}}".into()).await;
    assert_eq!((s, code(&body)), (400, "invalid_batch"), "{body}");
    let big = format!(
        "{{\"batch\": [{{\"op\":\"PUT\",\"type\":\"lists\",\"id\":\"{list}\",\"data\":{{\"name\":\"{}\"}}}}]}}",
        "x".repeat(1024 * 1024)
    );
    let (s, body) = raw(big).await;
    assert_eq!((s, code(&body)), (413, "payload_too_large"), "{body}");
    // Empty batch: fine, nothing to do.
    let (s, body) = alice.upload(json!([])).await;
    assert_eq!((s, body["applied"].as_i64()), (200, Some(0)), "{body}");
    // Not signed in.
    let (s, body) = app.user().upload(json!([good])).await;
    assert_eq!((s, code(&body)), (401, "unauthenticated"));
    assert_eq!(app.count("SELECT count(*) FROM lists").await, 0);
    assert_eq!(
        app.count("SELECT count(*) FROM users").await,
        1,
        "users untouched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_batch_sent_twice_at_once_is_applied_once() {
    let app = TestApp::start().await;
    let mut alice = app.signed_up("alice").await;
    let (list, _) = list_with_todo(&mut alice, "l").await;
    let batch = json!([
        entry(
            "PUT",
            "todos",
            &new_id(),
            json!({"list_id": list, "description": "once", "completed": 0}),
            30
        ),
        entry("PATCH", "lists", &list, json!({"name": "renamed"}), 31),
    ]);
    let (mut a, mut b) = (alice.clone(), alice.clone());
    let (ba, bb) = (batch.clone(), batch);
    let (ra, rb) = tokio::join!(a.upload(ba), b.upload(bb));
    assert_eq!((ra.0, rb.0), (200, 200), "{ra:?} {rb:?}");
    let applied = [
        ra.1["applied"].as_i64().unwrap(),
        rb.1["applied"].as_i64().unwrap(),
    ];
    assert!(applied.contains(&2) && applied.contains(&0), "{applied:?}");
    assert_eq!(
        app.count("SELECT count(*) FROM todos WHERE description = 'once'")
            .await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_column_added_while_running_is_writable_without_a_restart() {
    // `riptide dev` applies new migrations while the process runs.
    let app = TestApp::start().await;
    let mut alice = app.signed_up("alice").await;
    let (_, todo) = list_with_todo(&mut alice, "l").await;
    app.db
        .client()
        .await
        .batch_execute("ALTER TABLE todos ADD COLUMN priority integer")
        .await
        .unwrap();
    let batch = json!([entry("PATCH", "todos", &todo, json!({"priority": 3}), 40)]);
    // The catalog is re-read at most once a second: poll until it has been.
    let (s, body) = riptide_testkit::wait_for(
        "the new column to be accepted",
        std::time::Duration::from_secs(10),
        || {
            let (mut alice, batch) = (alice.clone(), batch.clone());
            async move {
                let (s, body) = alice.upload(batch).await;
                (s != 400 || code(&body) != "unknown_column").then_some((s, body))
            }
        },
    )
    .await;
    assert_eq!((s, body["applied"].as_i64()), (200, Some(1)), "{body}");
    let priority: i32 = app
        .query_one(&format!("SELECT priority FROM todos WHERE id = '{todo}'"))
        .await
        .get(0);
    assert_eq!(priority, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorship_columns_are_set_by_the_server() {
    let app = TestApp::start().await;
    let mut alice = app.signed_up("alice").await;
    let mut bob = app.signed_up("bob").await;
    let (list, _) = list_with_todo(&mut alice, "shared").await;
    share(&mut alice, &list, &bob).await;
    let authors = |todo: &str| {
        format!("SELECT created_by::text, completed_by::text FROM todos WHERE id = '{todo}'")
    };

    // Bob creates a todo claiming alice made and completed it.
    let todo = new_id();
    let (s, body) = bob
        .upload(json!([entry(
            "PUT",
            "todos",
            &todo,
            json!({"list_id": list, "description": "forged", "completed": 1,
                   "created_by": alice.id, "completed_by": alice.id}),
            1
        )]))
        .await;
    assert_eq!(s, 200, "{body}");
    let row = app.query_one(&authors(&todo)).await;
    assert_eq!(
        row.get::<_, Option<String>>(0).as_deref(),
        Some(bob.id.as_str())
    );
    assert_eq!(
        row.get::<_, Option<String>>(1).as_deref(),
        Some(bob.id.as_str())
    );

    // A missing user's id is replaced too (it never reaches the foreign key).
    let other = new_id();
    let (s, body) = bob
        .upload(json!([entry(
            "PUT",
            "todos",
            &other,
            json!({"list_id": list, "description": "x", "created_by": new_id()}),
            2
        )]))
        .await;
    assert_eq!(s, 200, "{body}");
    let row = app.query_one(&authors(&other)).await;
    assert_eq!(
        row.get::<_, Option<String>>(0).as_deref(),
        Some(bob.id.as_str())
    );
    assert_eq!(row.get::<_, Option<String>>(1), None, "not completed");

    // Alice cannot rewrite who created it; completing it makes her the completer, and
    // reopening it clears the completer, whatever the client says.
    let (s, body) = alice
        .upload(json!([
            entry("PATCH", "todos", &todo, json!({"created_by": alice.id}), 10),
            entry(
                "PATCH",
                "todos",
                &other,
                json!({"completed": true, "completed_by": bob.id}),
                11
            ),
        ]))
        .await;
    assert_eq!(s, 200, "{body}");
    let row = app.query_one(&authors(&todo)).await;
    assert_eq!(
        row.get::<_, Option<String>>(0).as_deref(),
        Some(bob.id.as_str())
    );
    let row = app.query_one(&authors(&other)).await;
    assert_eq!(
        row.get::<_, Option<String>>(1).as_deref(),
        Some(alice.id.as_str())
    );
    let (s, body) = bob
        .upload(json!([entry(
            "PATCH",
            "todos",
            &other,
            json!({"completed": 0, "completed_by": alice.id}),
            12
        )]))
        .await;
    assert_eq!(s, 200, "{body}");
    let row = app.query_one(&authors(&other)).await;
    assert_eq!(row.get::<_, Option<String>>(1), None);
    // A PUT over an existing todo keeps its creator.
    let (s, body) = alice
        .upload(json!([entry(
            "PUT",
            "todos",
            &todo,
            json!({"list_id": list, "description": "replaced", "created_by": alice.id}),
            13
        )]))
        .await;
    assert_eq!(s, 200, "{body}");
    let row = app.query_one(&authors(&todo)).await;
    assert_eq!(
        row.get::<_, Option<String>>(0).as_deref(),
        Some(bob.id.as_str())
    );
}
