//! Unit tests of the applier on synthetic pgoutput over the in-memory storage (see
//! `harness.rs`): acknowledgements, group commit, resuming, relations and changes, unchanged
//! TOAST columns.

use std::time::Duration;

use proptest::prelude::*;
use riptide_protocol::Lsn;
use riptide_rules::SqliteValue;

use super::StreamOptions;
use super::harness::{
    Harness, OTHER, TODOS, begin, big, commit, delete, insert, message, options, other, relation,
    t, text, todo, todos, truncate, update,
};
use crate::error::ReplicationError;
use crate::pgoutput::{LogicalMessage, OldTuple, TupleData, TupleValue};

// --- acknowledgements ----------------------------------------------------------------------

#[tokio::test]
async fn a_transaction_is_acknowledged_at_its_storage_commit() {
    let mut h = Harness::new(options()).await;
    h.feed(vec![todos()]).await;
    let ack = h.transaction(100, 110, vec![todo("1", "a", "x")]).await;
    assert_eq!(ack, Some(Lsn(110)));
    assert_eq!(h.storage.commits(), vec![Lsn(110)]);
    assert_eq!(h.text("1", "title").await, text("a"));
}

#[tokio::test]
async fn a_failed_storage_commit_acknowledges_nothing() {
    let mut h = Harness::new(options()).await;
    h.feed(vec![todos(), begin(100), todo("1", "a", "x")]).await;
    h.storage.log().fail_commit = true;
    assert!(h.send(commit(110)).await.is_err());
    assert!(h.acks.is_empty());
    assert!(h.storage.commits().is_empty());
    assert_eq!(h.row("1").await, None);
}

#[tokio::test]
async fn a_failed_save_acknowledges_nothing() {
    let mut h = Harness::new(StreamOptions {
        chunk_rows: 1,
        ..options()
    })
    .await;
    h.storage.log().fail_save = true;
    h.feed(vec![todos(), begin(100)]).await;
    // The first chunk's save fails in the background; the error comes with the next save
    // or the commit.
    let mut failed = false;
    for m in [todo("1", "a", "x"), todo("2", "b", "y"), commit(110)] {
        failed |= h.send(m).await.is_err();
    }
    assert!(failed);
    assert!(h.acks.is_empty());
    assert!(h.storage.commits().is_empty());
}

#[tokio::test]
async fn an_irrelevant_transaction_is_recorded_when_idle_long_enough() {
    let mut h = Harness::new(StreamOptions {
        idle_commit_interval: Duration::ZERO,
        ..options()
    })
    .await;
    h.feed(vec![other()]).await;
    // Nothing for storage: its position is recorded by an empty commit.
    let ack = h
        .transaction(100, 110, vec![insert(OTHER, vec![t("1"), t("v")])])
        .await;
    assert_eq!(ack, Some(Lsn(110)));
    assert_eq!(h.storage.log().saves, vec![Vec::<usize>::new()]);

    let mut h = Harness::new(options()).await;
    h.feed(vec![other()]).await;
    let ack = h
        .transaction(100, 110, vec![insert(OTHER, vec![t("1"), t("v")])])
        .await;
    assert_eq!(ack, None);
    assert_eq!(h.idle().await, None, "not yet due");
    assert!(h.storage.commits().is_empty());
}

#[tokio::test]
async fn a_checkpoint_message_commits_its_position() {
    let mut h = Harness::new(options()).await;
    assert_eq!(h.send(message(true, 50, "powersync")).await.unwrap(), None);
    assert_eq!(h.send(message(false, 60, "other")).await.unwrap(), None);
    assert_eq!(
        h.send(message(false, 70, "powersync")).await.unwrap(),
        Some(Lsn(70))
    );
    assert_eq!(h.storage.commits(), vec![Lsn(70)]);
}

#[tokio::test]
async fn a_checkpoint_message_commits_a_held_group_first() {
    let mut h = Harness::new(StreamOptions {
        group_max_transactions: 10,
        ..options()
    })
    .await;
    h.feed(vec![todos()]).await;
    assert_eq!(
        h.transaction(100, 110, vec![todo("1", "a", "x")]).await,
        None
    );
    assert!(h.applier.holding());
    let ack = h.send(message(false, 120, "powersync")).await.unwrap();
    assert_eq!(ack, Some(Lsn(120)));
    assert_eq!(h.storage.commits(), vec![Lsn(110), Lsn(120)]);
    assert_eq!(h.text("1", "title").await, text("a"));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Any mix of relevant and irrelevant transactions, group sizes, chunk sizes and
    /// releases: every acknowledgement is the newest storage commit (checked by the harness
    /// at each step), and in the end storage holds every row.
    #[test]
    fn acknowledgements_never_run_ahead_of_storage(
        transactions in proptest::collection::vec((0usize..4, any::<bool>(), any::<bool>()), 1..12),
        group_max_transactions in 1u64..5,
        chunk_rows in 1usize..4,
        idle_records in any::<bool>(),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let mut h = Harness::new(StreamOptions {
                chunk_rows,
                group_max_transactions,
                idle_commit_interval: if idle_records { Duration::ZERO } else { Duration::from_secs(3600) },
                ..options()
            })
            .await;
            h.feed(vec![todos(), other()]).await;
            let mut ids = Vec::new();
            for (i, (rows, release, checkpoint)) in transactions.into_iter().enumerate() {
                let base = 1_000 * (i as u64 + 1);
                let mut changes = vec![insert(OTHER, vec![t("o"), t("v")])];
                for r in 0..rows {
                    let id = format!("{i}-{r}");
                    changes.push(todo(&id, "t", "b"));
                    ids.push(id);
                }
                h.transaction(base, base + 10, changes).await;
                if checkpoint {
                    h.send(message(false, base + 20, "powersync")).await.unwrap();
                }
                if release {
                    h.release().await;
                }
            }
            h.release().await;
            assert!(!h.applier.holding());
            for id in &ids {
                assert!(h.row(id).await.is_some(), "row {id} stored");
            }
        });
    }
}

// --- group commit ------------------------------------------------------------------------

#[tokio::test]
async fn a_group_commits_at_its_transaction_limit() {
    let mut h = Harness::new(StreamOptions {
        group_max_transactions: 3,
        ..options()
    })
    .await;
    h.feed(vec![todos()]).await;
    let mut acks = Vec::new();
    for i in 1..=7u64 {
        let id = i.to_string();
        acks.push(
            h.transaction(100 * i, 100 * i + 10, vec![todo(&id, "t", "b")])
                .await,
        );
    }
    // No release in between (the socket loop always had the next transaction at hand): the
    // third and sixth transactions close their groups.
    let expected: Vec<Option<Lsn>> = (1..=7u64)
        .map(|i| (i % 3 == 0).then_some(Lsn(100 * i + 10)))
        .collect();
    assert_eq!(acks, expected);
    assert!(h.applier.holding());
    assert_eq!(h.release().await, Some(Lsn(710)));
    assert_eq!(h.storage.commits(), vec![Lsn(310), Lsn(610), Lsn(710)]);
    assert_eq!(h.storage.log().begun, 3, "one storage batch per group");
}

#[tokio::test]
async fn a_group_past_its_age_limit_commits_at_once() {
    let mut h = Harness::new(StreamOptions {
        group_max_transactions: 1_000,
        group_max_age: Duration::ZERO,
        ..options()
    })
    .await;
    h.feed(vec![todos()]).await;
    for i in 1..=3u64 {
        let id = i.to_string();
        let ack = h
            .transaction(100 * i, 100 * i + 10, vec![todo(&id, "t", "b")])
            .await;
        assert_eq!(ack, Some(Lsn(100 * i + 10)));
        assert!(!h.applier.holding());
    }
}

#[tokio::test]
async fn a_held_group_waits_for_release_and_continues_one_batch() {
    let mut h = Harness::new(StreamOptions {
        group_max_transactions: 1_000,
        ..options()
    })
    .await;
    h.feed(vec![todos()]).await;
    assert_eq!(
        h.transaction(100, 110, vec![todo("1", "a", "x")]).await,
        None
    );
    assert_eq!(
        h.transaction(200, 210, vec![todo("2", "b", "y")]).await,
        None
    );
    assert!(h.storage.commits().is_empty());
    assert_eq!(
        h.row("1").await,
        None,
        "nothing visible before the group commits"
    );
    assert_eq!(h.release().await, Some(Lsn(210)));
    assert_eq!(h.release().await, None, "nothing held any more");
    assert_eq!(h.storage.log().begun, 1);
    assert_eq!(h.text("1", "title").await, text("a"));
    assert_eq!(h.text("2", "title").await, text("b"));
}

#[tokio::test]
async fn saves_hold_at_most_chunk_rows_changes() {
    let mut h = Harness::new(StreamOptions {
        chunk_rows: 2,
        group_max_transactions: 3,
        ..options()
    })
    .await;
    h.feed(vec![todos()]).await;
    let changes = (0..5).map(|i| todo(&i.to_string(), "t", "b")).collect();
    assert_eq!(h.transaction(100, 110, changes).await, None);
    for i in 0..3u64 {
        let id = format!("g{i}");
        h.transaction(200 + 100 * i, 210 + 100 * i, vec![todo(&id, "t", "b")])
            .await;
    }
    h.release().await;
    // The group of the first three transactions, then the last one alone.
    assert_eq!(h.storage.commits(), vec![Lsn(310), Lsn(410)]);
    let saves = h.storage.log().saves.clone();
    assert_eq!(saves, vec![vec![2, 2, 2, 1], vec![1]]);
}

// --- resume --------------------------------------------------------------------------------

#[tokio::test]
async fn transactions_at_or_before_the_resume_position_are_skipped() {
    let mut h = Harness::resuming(options(), Lsn(300)).await;
    h.feed(vec![todos()]).await;
    assert_eq!(
        h.transaction(100, 110, vec![todo("1", "a", "x")]).await,
        None
    );
    // Ends exactly at the resume position: already applied.
    assert_eq!(
        h.transaction(292, 300, vec![todo("2", "b", "y")]).await,
        None
    );
    assert_eq!(
        h.send(message(false, 300, "powersync")).await.unwrap(),
        None
    );
    assert!(h.storage.commits().is_empty());
    assert_eq!(h.row("1").await, None);
    assert_eq!(h.row("2").await, None);

    let ack = h.transaction(400, 410, vec![todo("3", "c", "z")]).await;
    assert_eq!(ack, Some(Lsn(410)));
    assert_eq!(h.row("2").await, None);
    assert_eq!(h.text("3", "title").await, text("c"));
}

#[tokio::test]
async fn relations_described_in_a_skipped_transaction_still_count() {
    let mut h = Harness::resuming(options(), Lsn(300)).await;
    h.transaction(100, 110, vec![todos(), todo("1", "a", "x")])
        .await;
    let ack = h.transaction(400, 410, vec![todo("2", "b", "y")]).await;
    assert_eq!(ack, Some(Lsn(410)));
    assert_eq!(h.row("1").await, None);
    assert_eq!(h.text("2", "title").await, text("b"));
}

// --- relations and changes -----------------------------------------------------------------

#[tokio::test]
async fn a_change_to_an_undescribed_relation_is_an_error() {
    let mut h = Harness::new(options()).await;
    h.feed(vec![begin(100)]).await;
    let err = h.send(todo("1", "a", "x")).await.unwrap_err();
    assert!(matches!(err, ReplicationError::Protocol(_)), "{err:?}");
}

#[tokio::test]
async fn transaction_boundaries_out_of_order_are_errors() {
    let mut h = Harness::new(options()).await;
    assert!(h.send(commit(110)).await.is_err());
    h.feed(vec![todos()]).await;
    assert!(
        h.send(todo("1", "a", "x")).await.is_err(),
        "change outside a transaction"
    );
    h.feed(vec![begin(100)]).await;
    assert!(h.send(begin(200)).await.is_err());
}

#[tokio::test]
async fn tables_the_rules_do_not_use_are_ignored() {
    let mut h = Harness::new(options()).await;
    h.feed(vec![other()]).await;
    let ack = h
        .transaction(100, 110, vec![insert(OTHER, vec![t("1"), t("v")])])
        .await;
    assert_eq!(ack, None);
    assert_eq!(h.storage.log().begun, 0);
}

#[tokio::test]
async fn a_table_without_replica_identity_is_not_replicated() {
    let mut h = Harness::new(options()).await;
    let no_key = relation(
        TODOS,
        "todos",
        &[("id", false), ("title", false), ("body", false)],
    );
    let ack = h
        .transaction(100, 110, vec![no_key, todo("1", "a", "x")])
        .await;
    assert_eq!(ack, None);
    assert_eq!(h.row("1").await, None);
}

#[tokio::test]
async fn a_relation_described_again_applies_to_later_changes() {
    let mut h = Harness::new(options()).await;
    h.transaction(100, 110, vec![todos(), todo("1", "a", "x")])
        .await;
    // A column added at the source: the next change carries it.
    let wider = relation(
        TODOS,
        "todos",
        &[
            ("id", true),
            ("title", false),
            ("body", false),
            ("extra", false),
        ],
    );
    h.transaction(
        200,
        210,
        vec![wider, insert(TODOS, vec![t("2"), t("b"), t("y"), t("e")])],
    )
    .await;
    assert_eq!(h.text("2", "title").await, text("b"));
    assert_eq!(h.text("2", "extra").await, text("e"));
    // A column count that does not match the relation is a protocol error.
    h.feed(vec![begin(300)]).await;
    assert!(h.send(todo("3", "c", "z")).await.is_err());
}

#[tokio::test]
async fn updates_deletes_and_key_changes() {
    let mut h = Harness::new(options()).await;
    h.feed(vec![todos()]).await;
    h.transaction(100, 110, vec![todo("1", "a", "x"), todo("2", "b", "y")])
        .await;
    h.transaction(
        200,
        210,
        vec![
            update(TODOS, None, vec![t("1"), t("a2"), t("x")]),
            // The identity changed: the row moves from key 2 to key 3.
            update(
                TODOS,
                Some(OldTuple::Key(TupleData(vec![
                    t("2"),
                    TupleValue::Null,
                    TupleValue::Null,
                ]))),
                vec![t("3"), t("b"), t("y")],
            ),
        ],
    )
    .await;
    assert_eq!(h.text("1", "title").await, text("a2"));
    assert_eq!(h.row("2").await, None);
    assert_eq!(h.text("3", "title").await, text("b"));

    let ack = h
        .transaction(
            300,
            310,
            vec![delete(
                TODOS,
                vec![t("1"), TupleValue::Null, TupleValue::Null],
            )],
        )
        .await;
    assert_eq!(ack, Some(Lsn(310)));
    assert_eq!(h.row("1").await, None);
    assert!(h.row("3").await.is_some());
}

#[tokio::test]
async fn truncate_removes_the_tables_rows() {
    let mut h = Harness::new(options()).await;
    h.feed(vec![todos(), other()]).await;
    h.transaction(100, 110, vec![todo("1", "a", "x"), todo("2", "b", "y")])
        .await;
    let ack = h
        .transaction(200, 210, vec![truncate(vec![TODOS, OTHER])])
        .await;
    assert_eq!(ack, Some(Lsn(210)));
    assert_eq!(h.row("1").await, None);
    assert_eq!(h.row("2").await, None);
    // A row inserted after the truncate in the same transaction stays.
    h.transaction(
        300,
        310,
        vec![
            todo("3", "c", "z"),
            truncate(vec![TODOS]),
            todo("4", "d", "w"),
        ],
    )
    .await;
    assert_eq!(h.row("3").await, None);
    assert_eq!(h.text("4", "title").await, text("d"));
}

// --- unchanged TOAST columns -------------------------------------------------------------

/// An update that left `body` unchanged (TOASTed and not sent).
fn title_update(id: &str, title: &str) -> LogicalMessage {
    update(TODOS, None, vec![t(id), t(title), TupleValue::Unchanged])
}

#[tokio::test]
async fn unchanged_toast_columns_come_from_storage() {
    let mut h = Harness::new(options()).await;
    h.feed(vec![todos()]).await;
    h.transaction(100, 110, vec![todo("1", "a", &big('x'))])
        .await;
    h.transaction(200, 210, vec![title_update("1", "b")]).await;
    assert_eq!(h.text("1", "title").await, text("b"));
    assert_eq!(h.text("1", "body").await, text(&big('x')));
}

#[tokio::test]
async fn unchanged_toast_columns_come_from_earlier_in_the_transaction() {
    let mut h = Harness::new(StreamOptions {
        chunk_rows: 1,
        ..options()
    })
    .await;
    h.feed(vec![todos()]).await;
    // Not in storage yet: the insert's row is remembered within the transaction, across
    // chunks.
    h.transaction(
        100,
        110,
        vec![
            todo("1", "a", &big('y')),
            title_update("1", "b"),
            title_update("1", "c"),
        ],
    )
    .await;
    assert_eq!(h.text("1", "title").await, text("c"));
    assert_eq!(h.text("1", "body").await, text(&big('y')));
}

#[tokio::test]
async fn unchanged_toast_columns_come_from_the_full_old_row() {
    let mut h = Harness::new(options()).await;
    h.feed(vec![todos()]).await;
    // REPLICA IDENTITY FULL: the old row carries the value; storage has no row.
    let old = OldTuple::Full(TupleData(vec![t("1"), t("a"), t("old body")]));
    h.transaction(
        100,
        110,
        vec![update(
            TODOS,
            Some(old),
            vec![t("1"), t("b"), TupleValue::Unchanged],
        )],
    )
    .await;
    assert_eq!(h.text("1", "title").await, text("b"));
    assert_eq!(h.text("1", "body").await, text("old body"));
}

#[tokio::test]
async fn unchanged_toast_columns_found_nowhere_are_null() {
    // No stored row and no source to re-read from.
    let mut h = Harness::new(options()).await;
    h.feed(vec![todos()]).await;
    h.transaction(100, 110, vec![title_update("1", "b")]).await;
    assert_eq!(h.text("1", "title").await, text("b"));
    assert_eq!(h.text("1", "body").await, Some(SqliteValue::Null));
}

#[tokio::test]
async fn an_update_without_its_key_is_skipped() {
    let mut h = Harness::new(options()).await;
    h.feed(vec![todos()]).await;
    let ack = h
        .transaction(
            100,
            110,
            vec![update(
                TODOS,
                None,
                vec![TupleValue::Unchanged, t("b"), t("y")],
            )],
        )
        .await;
    assert_eq!(ack, None);
    assert_eq!(h.storage.log().begun, 0);
}

// --- memory --------------------------------------------------------------------------------

/// Rows of a transaction stay in memory a chunk at a time, however many rows it writes: a bulk
/// update of wide rows must not hold them all until it ends.
#[tokio::test]
async fn a_wide_transaction_holds_one_chunk_of_rows_in_memory() {
    let mut h = Harness::new(StreamOptions {
        chunk_rows: 100,
        ..options()
    })
    .await;
    h.feed(vec![todos(), begin(100)]).await;
    for i in 0..2_000 {
        h.send(todo(&i.to_string(), "t", &big('w'))).await.unwrap();
    }
    let held = h
        .applier
        .tx
        .as_ref()
        .map_or(0, |tx| tx.written.len() + tx.pending.len());
    assert!(
        held <= 200,
        "{held} rows of the open transaction are held in memory"
    );
    // An update leaving the body unchanged still finds it, long after its chunk was saved.
    h.send(title_update("0", "late")).await.unwrap();
    h.send(commit(110)).await.unwrap();
    assert_eq!(h.text("0", "title").await, text("late"));
    assert_eq!(h.text("0", "body").await, text(&big('w')));
}
