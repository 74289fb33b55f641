//! The `LISTEN` connection's bounded queue on a real Postgres: a reader that falls behind is
//! told once that notifications were dropped, and keeps receiving after.

use std::time::Duration;

use riptide_pg::{Listened, PgConnection};
use riptide_testkit::TestDatabase;
use tokio_postgres::AsyncMessage;

const WAIT: Duration = Duration::from_secs(10);

async fn next(listening: &mut riptide_pg::Listening) -> Listened {
    tokio::time::timeout(WAIT, listening.recv())
        .await
        .expect("a message in time")
        .expect("the connection is open")
}

fn payload(got: Listened) -> String {
    match got {
        Listened::Message(AsyncMessage::Notification(n)) => n.payload().to_owned(),
        other => panic!("expected a notification, got {other:?}"),
    }
}

#[tokio::test]
async fn a_reader_that_falls_behind_is_told_and_keeps_receiving() {
    let db = TestDatabase::create().await;
    let connection = PgConnection::from_uri(&db.url()).unwrap();
    let (client, mut listening) = connection.connect_listening(4).await.unwrap();
    client.batch_execute("LISTEN riptide_test").await.unwrap();

    // 100 distinct notifications in one transaction, delivered at its commit, none read yet.
    let sender = db.client().await;
    sender
        .batch_execute(
            "SELECT pg_notify('riptide_test', i::text) FROM generate_series(1, 100) AS i",
        )
        .await
        .unwrap();
    // The connection is still read (queries answer) while the queue is full; Postgres sends
    // pending notifications before a query's answer, so all 100 have arrived after it.
    let row = tokio::time::timeout(WAIT, client.query_one("SELECT 1", &[]))
        .await
        .expect("the listening client answers while its queue is full")
        .unwrap();
    assert_eq!(row.get::<_, i32>(0), 1);

    // Overflow first, then the four that fit, in order, then nothing else of that burst.
    assert!(matches!(next(&mut listening).await, Listened::Overflowed));
    let mut kept = Vec::new();
    for _ in 0..4 {
        kept.push(payload(next(&mut listening).await));
    }
    assert_eq!(kept, ["1", "2", "3", "4"]);

    // Later notifications arrive as before, without another overflow.
    sender
        .batch_execute("SELECT pg_notify('riptide_test', 'after')")
        .await
        .unwrap();
    assert_eq!(payload(next(&mut listening).await), "after");
}
