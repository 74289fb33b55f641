//! Tests of streamed in-progress transactions (`streamed.rs`) on synthetic pgoutput protocol 2
//! over the recording storage: applied while they run, visible only at Stream Commit, gone at
//! Stream Abort, deferred when something else needs storage, and neither lost nor applied
//! twice across a restart.

use riptide_protocol::Lsn;

use super::StreamOptions;
use super::harness::{
    Harness, OTHER, TODOS, begin, commit, delete, insert, message, options, other, relation,
    stream_abort, stream_commit, t, text, todo, todos,
};
use crate::error::ReplicationError;
use crate::pgoutput::TupleValue;

const XID: u32 = 700;
const SUB: u32 = 701;
const OTHER_XID: u32 = 800;

/// Chunks of two rows: a streamed transaction saves as it arrives.
fn small_chunks() -> StreamOptions {
    StreamOptions {
        chunk_rows: 2,
        ..options()
    }
}

fn todo_in(xid: u32, id: &str) -> (u32, crate::pgoutput::LogicalMessage) {
    (xid, todo(id, &format!("title {id}"), "body"))
}

async fn described() -> Harness {
    let mut h = Harness::new(small_chunks()).await;
    h.feed(vec![todos(), other()]).await;
    h
}

#[tokio::test]
async fn a_streamed_transaction_is_saved_while_it_runs_and_visible_at_its_commit() {
    let mut h = described().await;
    h.block(XID, (1..=4).map(|i| todo_in(XID, &i.to_string())).collect())
        .await
        .unwrap();
    h.block(XID, (5..=6).map(|i| todo_in(XID, &i.to_string())).collect())
        .await
        .unwrap();
    // Saved into one open batch, nothing committed or visible.
    assert_eq!(h.storage.log().begun, 1);
    assert_eq!(h.storage.log().open, 1);
    assert!(h.storage.commits().is_empty());
    assert_eq!(h.row("1").await, None);
    assert_eq!(h.idle().await, None);

    let ack = h.send(stream_commit(XID, 500)).await.unwrap();
    assert_eq!(ack, Some(Lsn(500)));
    assert_eq!(h.storage.commits(), vec![Lsn(500)]);
    assert_eq!(h.storage.log().saves, vec![vec![2, 2, 2]]);
    for i in 1..=6 {
        assert_eq!(
            h.text(&i.to_string(), "title").await,
            text(&format!("title {i}"))
        );
    }
}

#[tokio::test]
async fn a_streamed_abort_discards_everything_saved() {
    let mut h = described().await;
    h.block(XID, (1..=5).map(|i| todo_in(XID, &i.to_string())).collect())
        .await
        .unwrap();
    h.send(stream_abort(XID, XID)).await.unwrap();
    assert!(h.batches_closed().await);
    assert!(h.storage.commits().is_empty());
    assert_eq!(h.row("1").await, None);
    // The stream goes on.
    let ack = h.transaction(600, 610, vec![todo("9", "n", "b")]).await;
    assert_eq!(ack, Some(Lsn(610)));
    assert_eq!(h.row("1").await, None);
    assert_eq!(h.text("9", "title").await, text("n"));
}

#[tokio::test]
async fn interleaved_streamed_transactions_without_changes_pass_through() {
    let mut h = described().await;
    h.block(
        XID,
        vec![todo_in(XID, "1"), todo_in(XID, "2"), todo_in(XID, "3")],
    )
    .await
    .unwrap();
    // Another streamed transaction, on a table the rules do not use, between the blocks;
    // then a committed transaction without changes for storage.
    h.block(
        OTHER_XID,
        vec![(OTHER_XID, insert(OTHER, vec![t("1"), t("v")]))],
    )
    .await
    .unwrap();
    h.transaction(300, 310, vec![insert(OTHER, vec![t("2"), t("v")])])
        .await;
    h.block(XID, vec![todo_in(XID, "4")]).await.unwrap();
    h.send(stream_commit(OTHER_XID, 400)).await.unwrap();
    assert!(
        h.storage.commits().is_empty(),
        "nothing commits under the open batch"
    );
    assert_eq!(
        h.send(stream_commit(XID, 500)).await.unwrap(),
        Some(Lsn(500))
    );
    assert_eq!(h.storage.commits(), vec![Lsn(500)]);
    assert_eq!(h.text("4", "title").await, text("title 4"));
}

#[tokio::test]
async fn a_second_streamed_transaction_with_changes_defers_the_first() {
    let mut h = described().await;
    h.block(
        XID,
        vec![todo_in(XID, "1"), todo_in(XID, "2"), todo_in(XID, "3")],
    )
    .await
    .unwrap();
    let err = h
        .block(OTHER_XID, vec![todo_in(OTHER_XID, "7")])
        .await
        .unwrap_err();
    assert!(
        matches!(err, ReplicationError::StreamDeferred { xid: XID }),
        "{err}"
    );
    assert!(h.storage.commits().is_empty());
    assert_eq!(h.row("1").await, None);
}

#[tokio::test]
async fn a_committed_transaction_needing_storage_defers_the_streamed_one() {
    let mut h = described().await;
    h.block(XID, vec![todo_in(XID, "1"), todo_in(XID, "2")])
        .await
        .unwrap();
    h.feed(vec![begin(300), todo("8", "a", "b")]).await;
    let err = h.send(commit(310)).await.unwrap_err();
    assert!(
        matches!(err, ReplicationError::StreamDeferred { xid: XID }),
        "{err}"
    );
    assert!(h.storage.commits().is_empty());
    assert!(h.batches_closed().await);
}

#[tokio::test]
async fn a_committed_transaction_before_the_first_save_is_not_blocked() {
    let mut h = described().await;
    // One change: pending, no batch open yet.
    h.block(XID, vec![todo_in(XID, "1")]).await.unwrap();
    assert_eq!(h.storage.log().begun, 0);
    let ack = h.transaction(300, 310, vec![todo("8", "a", "b")]).await;
    assert_eq!(ack, Some(Lsn(310)));
    h.block(XID, vec![todo_in(XID, "2"), todo_in(XID, "3")])
        .await
        .unwrap();
    assert_eq!(
        h.send(stream_commit(XID, 500)).await.unwrap(),
        Some(Lsn(500))
    );
    assert_eq!(h.storage.commits(), vec![Lsn(310), Lsn(500)]);
    assert_eq!(h.text("3", "title").await, text("title 3"));
}

#[tokio::test]
async fn a_subtransaction_abort_defers_only_when_its_changes_were_taken() {
    // Its changes were taken: the transaction is deferred.
    let mut h = described().await;
    h.block(
        XID,
        vec![todo_in(XID, "1"), todo_in(SUB, "2"), todo_in(XID, "3")],
    )
    .await
    .unwrap();
    let err = h.send(stream_abort(XID, SUB)).await.unwrap_err();
    assert!(
        matches!(err, ReplicationError::StreamDeferred { xid: XID }),
        "{err}"
    );
    assert!(h.storage.commits().is_empty());

    // A subtransaction with nothing for storage: nothing to take back.
    let mut h = described().await;
    h.block(
        XID,
        vec![
            todo_in(XID, "1"),
            (SUB, insert(OTHER, vec![t("1"), t("v")])),
            todo_in(XID, "3"),
        ],
    )
    .await
    .unwrap();
    h.send(stream_abort(XID, SUB)).await.unwrap();
    assert_eq!(
        h.send(stream_commit(XID, 500)).await.unwrap(),
        Some(Lsn(500))
    );
    assert_eq!(h.text("3", "title").await, text("title 3"));
}

#[tokio::test]
async fn a_write_checkpoint_waits_for_the_open_batch() {
    let mut h = Harness::new(StreamOptions {
        idle_commit_interval: std::time::Duration::ZERO,
        ..small_chunks()
    })
    .await;
    h.feed(vec![todos()]).await;
    h.block(XID, vec![todo_in(XID, "1"), todo_in(XID, "2")])
        .await
        .unwrap();
    assert_eq!(
        h.send(message(false, 300, "powersync")).await.unwrap(),
        None
    );
    assert!(h.storage.commits().is_empty());
    h.send(stream_abort(XID, XID)).await.unwrap();
    // Recorded once the batch is gone.
    assert_eq!(h.idle().await, Some(Lsn(300)));
}

#[tokio::test]
async fn a_restart_mid_stream_loses_and_duplicates_nothing() {
    let mut h = described().await;
    h.block(XID, (1..=5).map(|i| todo_in(XID, &i.to_string())).collect())
        .await
        .unwrap();
    assert!(h.storage.log().saves.is_empty());
    assert_eq!(h.storage.log().open, 1);
    // The process dies: the applier and its open batch are gone; the slot sends the whole
    // transaction again.
    let mut h = h.restart(small_chunks(), Lsn::ZERO);
    assert!(h.batches_closed().await);
    assert!(h.storage.commits().is_empty());
    h.feed(vec![todos()]).await;
    h.block(XID, (1..=5).map(|i| todo_in(XID, &i.to_string())).collect())
        .await
        .unwrap();
    h.block(
        XID,
        vec![(
            XID,
            delete(TODOS, vec![t("5"), TupleValue::Null, TupleValue::Null]),
        )],
    )
    .await
    .unwrap();
    assert_eq!(
        h.send(stream_commit(XID, 500)).await.unwrap(),
        Some(Lsn(500))
    );
    assert_eq!(h.storage.commits(), vec![Lsn(500)]);
    assert_eq!(h.text("4", "title").await, text("title 4"));
    assert_eq!(h.row("5").await, None);

    // A restart after the commit: sent again, applied again into a batch, rolled back.
    let mut h = h.restart(small_chunks(), Lsn(500));
    h.feed(vec![todos()]).await;
    h.block(XID, vec![(XID, todo("4", "stale", "b")), todo_in(XID, "6")])
        .await
        .unwrap();
    assert_eq!(h.send(stream_commit(XID, 500)).await.unwrap(), None);
    assert_eq!(h.storage.commits(), vec![Lsn(500)]);
    assert!(h.batches_closed().await);
    assert_eq!(h.text("4", "title").await, text("title 4"));
    assert_eq!(h.row("6").await, None);
}

#[tokio::test]
async fn relations_described_in_a_stream_are_its_own() {
    let mut h = described().await;
    // Inside the stream, todos gains a column; outside it keeps its shape.
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
    h.block(
        XID,
        vec![
            (XID, wider),
            (XID, insert(TODOS, vec![t("1"), t("wide"), t("b"), t("e")])),
        ],
    )
    .await
    .unwrap();
    let ack = h
        .transaction(300, 310, vec![todo("2", "narrow", "b")])
        .await;
    assert_eq!(ack, Some(Lsn(310)));
    h.block(
        XID,
        vec![(XID, insert(TODOS, vec![t("3"), t("wide"), t("b"), t("e")]))],
    )
    .await
    .unwrap();
    assert_eq!(
        h.send(stream_commit(XID, 500)).await.unwrap(),
        Some(Lsn(500))
    );
    assert_eq!(h.text("3", "title").await, text("wide"));
    assert_eq!(h.text("2", "title").await, text("narrow"));
}

#[tokio::test]
async fn a_held_group_commits_before_a_stream_block() {
    let mut h = Harness::new(StreamOptions {
        group_max_transactions: 100,
        ..small_chunks()
    })
    .await;
    h.feed(vec![todos()]).await;
    assert_eq!(
        h.transaction(100, 110, vec![todo("1", "a", "b")]).await,
        None
    );
    assert!(h.applier.holding());
    h.send(super::harness::stream_start(XID)).await.unwrap();
    assert_eq!(h.storage.commits(), vec![Lsn(110)]);
}
