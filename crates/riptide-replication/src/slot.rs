//! Replication slots on the source: whether one is usable, dropping one, starting to stream
//! from one, and listing ours.

use std::time::Duration;

use pgwire_replication::ReplicationClient;
use riptide_protocol::Lsn;

use riptide_pg::{Backoff, PgConnection, RetryError, retry};
use tokio_util::sync::CancellationToken;

use crate::connection::{self, CONNECT_TIMEOUT, within};
use crate::error::ReplicationError;

/// What the source has of a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SlotState {
    Missing,
    /// Invalidated (`wal_status = lost`): the WAL it needed is gone.
    Lost,
    /// Usable; changes are available from its confirmed position on.
    Usable {
        confirmed_flush: Option<Lsn>,
    },
}

/// One slot of the source database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotInfo {
    pub name: String,
    /// A walsender streams from it now.
    pub active: bool,
}

pub(crate) async fn state(
    client: &tokio_postgres::Client,
    slot: &str,
) -> Result<SlotState, ReplicationError> {
    // `wal_status` (Postgres 13+) is `lost` for invalidated slots; row_to_json keeps this
    // working on older versions.
    let row = client
        .query_opt(
            "SELECT row_to_json(s)::text FROM pg_replication_slots s WHERE slot_name = $1",
            &[&slot],
        )
        .await?;
    let Some(row) = row else {
        return Ok(SlotState::Missing);
    };
    let json: String = row.try_get(0)?;
    let value: serde_json::Value = serde_json::from_str(&json)
        .map_err(|_| ReplicationError::Catalog("pg_replication_slots row is not JSON".into()))?;
    if value.get("wal_status").and_then(serde_json::Value::as_str) == Some("lost") {
        return Ok(SlotState::Lost);
    }
    let confirmed_flush = value
        .get("confirmed_flush_lsn")
        .and_then(serde_json::Value::as_str)
        .and_then(|s| s.parse::<Lsn>().ok());
    Ok(SlotState::Usable { confirmed_flush })
}

/// The slots of the connected database (any name).
pub(crate) async fn list(
    client: &tokio_postgres::Client,
) -> Result<Vec<SlotInfo>, ReplicationError> {
    let rows = client
        .query(
            "SELECT slot_name::text, active FROM pg_replication_slots \
             WHERE database = current_database() ORDER BY slot_name",
            &[],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(SlotInfo {
                name: r.try_get(0)?,
                active: r.try_get(1)?,
            })
        })
        .collect()
}

/// Drops `slot` if it exists, waiting briefly for a session that still holds it to end.
pub(crate) async fn drop(
    client: &tokio_postgres::Client,
    slot: &str,
) -> Result<(), ReplicationError> {
    // The caller's task is what gets cancelled; the retry itself needs no token.
    let never = CancellationToken::new();
    let params: &[&(dyn tokio_postgres::types::ToSql + Sync)] = &[&slot];
    let dropped = retry(
        SLOT_BUSY_BACKOFF,
        SLOT_BUSY_ATTEMPTS,
        &never,
        move || {
            client.execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1",
                params,
            )
        },
        // 55006 object_in_use: the slot's previous session has not ended yet.
        |e: &tokio_postgres::Error| {
            e.code() == Some(&tokio_postgres::error::SqlState::OBJECT_IN_USE)
        },
    )
    .await
    .map_err(|e| match e {
        RetryError::Failed(e) => ReplicationError::Query(e),
        RetryError::Cancelled => ReplicationError::Protocol("cancelled".into()),
    })?;
    if dropped > 0 {
        tracing::info!(slot = %slot, "replication slot dropped");
    }
    Ok(())
}

/// Ends the session streaming from `slot`, if any (`pg_terminate_backend` of its
/// `active_pid`), and waits until the slot is free. A replicator that took the lease over does
/// this before it streams: the previous holder may be paused with its walsender connection
/// still open, and a slot serves one walsender at a time. Returns the pid ended.
pub(crate) async fn take_over(
    client: &tokio_postgres::Client,
    slot: &str,
) -> Result<Option<i32>, ReplicationError> {
    let row = client
        .query_opt(
            "SELECT active_pid, pg_terminate_backend(active_pid) FROM pg_replication_slots \
             WHERE slot_name = $1 AND active_pid IS NOT NULL AND active_pid <> pg_backend_pid()",
            &[&slot],
        )
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let pid: i32 = row.try_get(0)?;
    let ended: bool = row.try_get(1)?;
    tracing::warn!(slot = %slot, pid, ended, "ended the previous replicator's session on the slot");
    Ok(Some(pid))
}

/// While a stopped replicator's session still holds a slot: every 100 ms, for 5 s.
const SLOT_BUSY_BACKOFF: Backoff = Backoff::fixed(Duration::from_millis(100));
const SLOT_BUSY_ATTEMPTS: u32 = 50;

/// Connects (TLS as for every connection to `source`) and starts streaming, waiting briefly
/// while the slot's previous session (a replicator that was just stopped) still holds it.
pub(crate) async fn start_streaming(
    source: &PgConnection,
    cfg: pgwire_replication::ReplicationConfig,
) -> Result<ReplicationClient, ReplicationError> {
    let never = CancellationToken::new();
    let cfg = &cfg;
    retry(
        SLOT_BUSY_BACKOFF,
        SLOT_BUSY_ATTEMPTS,
        &never,
        move || {
            within("start streaming", CONNECT_TIMEOUT, async move {
                let mut session = connection::connect_gated(source, cfg.clone()).await?;
                session.start().await?;
                session.wait_started().await?;
                Ok(session)
            })
        },
        // 55006 object_in_use: "replication slot … is active for PID …".
        |e: &ReplicationError| {
            matches!(e, ReplicationError::Stream(pgwire_replication::PgWireError::Server(m)) if in_use(m))
        },
    )
    .await
    .map_err(|e| match e {
        RetryError::Failed(e) => e,
        RetryError::Cancelled => ReplicationError::Protocol("cancelled".into()),
    })
}

fn in_use(message: &str) -> bool {
    message.contains("55006") || message.contains("is active for PID")
}
