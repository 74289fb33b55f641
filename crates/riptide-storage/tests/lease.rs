//! The replication lease and node rows on a real Postgres: take, renew, expiry, takeover with
//! epoch + 1, release, and fencing (a storage fenced at a stale epoch commits nothing).

use std::time::{Duration, Instant};

use riptide_protocol::Lsn;
use riptide_storage::{BucketStorage, Fence, PgStorage, StorageError};
use riptide_testkit::TestDatabase;

use crate::suite::{new_deployment, upsert};

const LEASE: &str = "replication";

async fn make() -> (PgStorage, TestDatabase) {
    let db = TestDatabase::create().await;
    let storage = PgStorage::connect(&db.url()).await.unwrap();
    storage.migrate().await.unwrap();
    (storage, db)
}

fn fence(epoch: i64) -> Fence {
    Fence {
        lease: LEASE.into(),
        epoch,
        duration: Duration::from_secs(10),
    }
}

/// Polls `acquire` until it grants the lease (the heartbeat ages on the database clock).
async fn acquire_within(s: &PgStorage, holder: &str, duration: Duration, within: Duration) -> i64 {
    let deadline = Instant::now() + within;
    loop {
        if let Some(epoch) = s.acquire_lease(LEASE, holder, duration).await.unwrap() {
            return epoch;
        }
        assert!(Instant::now() < deadline, "{holder} never got the lease");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn take_renew_expire_and_take_over() {
    let (s, _db) = make().await;
    let short = Duration::from_millis(400);
    assert_eq!(s.acquire_lease(LEASE, "a", short).await.unwrap(), Some(1));
    // Held and fresh: nobody else gets it, and renewing keeps it.
    assert_eq!(s.acquire_lease(LEASE, "b", short).await.unwrap(), None);
    assert!(s.renew_lease(&fence(1), "a").await.unwrap());
    let record = s.lease(LEASE).await.unwrap().unwrap();
    assert_eq!((record.holder.as_str(), record.epoch), ("a", 1));
    assert!(record.heartbeat_age < short.as_secs_f64());

    // `a` stops renewing: `b` takes it once the heartbeat is older than the duration.
    let started = Instant::now();
    let epoch = acquire_within(&s, "b", short, Duration::from_secs(5)).await;
    assert_eq!(epoch, 2, "a takeover raises the epoch");
    assert!(started.elapsed() >= Duration::from_millis(200));
    // The old holder's renewal fails: it must stop.
    assert!(!s.renew_lease(&fence(1), "a").await.unwrap());
    assert!(s.renew_lease(&fence(2), "b").await.unwrap());

    // A release frees it at once.
    assert!(s.release_lease(&fence(2), "b").await.unwrap());
    let long = Duration::from_secs(60);
    assert_eq!(s.acquire_lease(LEASE, "a", long).await.unwrap(), Some(3));
    assert!(!s.release_lease(&fence(2), "b").await.unwrap());
}

#[tokio::test]
async fn a_stale_epoch_commits_nothing() {
    let (s, _db) = make().await;
    let id = new_deployment(&s).await;
    let long = Duration::from_secs(60);
    assert_eq!(s.acquire_lease(LEASE, "a", long).await.unwrap(), Some(1));
    let old = s.fenced(fence(1));

    // Current epoch: commits.
    let mut batch = old.begin_batch(id).await.unwrap();
    batch
        .save(vec![upsert(
            "public.t",
            "k1",
            &[("b", "1", r#"{"id":"1"}"#)],
        )])
        .await
        .unwrap();
    batch.commit(Lsn(10)).await.unwrap();

    // A batch open while another node takes over (released here, as a takeover after
    // expiry would): its commit is refused and nothing of it is stored.
    let mut batch = old.begin_batch(id).await.unwrap();
    batch
        .save(vec![upsert(
            "public.t",
            "k2",
            &[("b", "2", r#"{"id":"2"}"#)],
        )])
        .await
        .unwrap();
    assert!(s.release_lease(&fence(1), "a").await.unwrap());
    assert_eq!(s.acquire_lease(LEASE, "b", long).await.unwrap(), Some(2));
    let refused = batch.commit(Lsn(20)).await.unwrap_err();
    assert!(
        matches!(&refused, StorageError::LeaseLost { lease, epoch: 1 } if lease == LEASE),
        "{refused:?}"
    );
    let stored = s.deployment(id).await.unwrap();
    assert_eq!(
        stored.resume_lsn,
        Some(Lsn(10)),
        "the stale commit stored nothing"
    );

    // Every other fenced write is refused too.
    assert!(matches!(
        old.activate(id).await,
        Err(StorageError::LeaseLost { .. })
    ));
    assert!(matches!(
        old.create_deployment("bucket_definitions: {}", "riptide_")
            .await,
        Err(StorageError::LeaseLost { .. })
    ));
    assert!(matches!(
        old.terminate(id).await,
        Err(StorageError::LeaseLost { .. })
    ));
    assert_eq!(
        s.deployment(id).await.unwrap().state,
        riptide_storage::DeploymentState::Processing
    );

    // The new holder writes.
    let new = s.fenced(fence(2));
    let mut batch = new.begin_batch(id).await.unwrap();
    batch
        .save(vec![upsert(
            "public.t",
            "k2",
            &[("b", "2", r#"{"id":"2"}"#)],
        )])
        .await
        .unwrap();
    batch.commit(Lsn(20)).await.unwrap();
    new.activate(id).await.unwrap();
}

#[tokio::test]
async fn nodes_register_beat_and_leave() {
    let (s, _db) = make().await;
    s.register_node("n1", "replicator", "127.0.0.1:1")
        .await
        .unwrap();
    s.register_node("n2", "api", "127.0.0.1:2").await.unwrap();
    assert!(s.node_heartbeat("n1", Some(4)).await.unwrap());
    let nodes = s.nodes().await.unwrap();
    assert_eq!(nodes.len(), 2);
    let n1 = nodes.iter().find(|n| n.id == "n1").unwrap();
    assert_eq!((n1.role.as_str(), n1.lease_epoch), ("replicator", Some(4)));
    assert!(!n1.is_gone(Duration::from_secs(10)));
    assert_eq!(
        nodes.iter().find(|n| n.id == "n2").unwrap().address,
        "127.0.0.1:2"
    );

    s.deregister_node("n1").await.unwrap();
    assert!(!s.node_heartbeat("n1", None).await.unwrap());
    let ids: Vec<String> = s.nodes().await.unwrap().into_iter().map(|n| n.id).collect();
    assert_eq!(ids, vec!["n2".to_string()]);
}
