//! Replication slots on the source: whether one is usable, dropping one, starting to stream
//! from one, and listing ours.

use std::time::Duration;

use pgwire_replication::ReplicationClient;
use riptide_protocol::Lsn;

use crate::connection::{CONNECT_TIMEOUT, within};
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
    let mut attempts = 0;
    loop {
        let result = client
            .execute(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = $1",
                &[&slot],
            )
            .await;
        match result {
            Ok(n) => {
                if n > 0 {
                    tracing::info!(slot = %slot, "replication slot dropped");
                }
                return Ok(());
            }
            // 55006 object_in_use: the slot's previous session has not ended yet.
            Err(e)
                if attempts < 50
                    && e.code() == Some(&tokio_postgres::error::SqlState::OBJECT_IN_USE) =>
            {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Connects and starts streaming, waiting briefly while the slot's previous session (a
/// replicator that was just stopped) still holds it.
pub(crate) async fn start_streaming(
    cfg: pgwire_replication::ReplicationConfig,
) -> Result<ReplicationClient, ReplicationError> {
    let mut attempts = 0;
    loop {
        let attempt = within("start streaming", CONNECT_TIMEOUT, async {
            let mut session = ReplicationClient::connect(cfg.clone()).await?;
            session.wait_started().await?;
            Ok(session)
        })
        .await;
        match attempt {
            Ok(session) => return Ok(session),
            // 55006 object_in_use: "replication slot … is active for PID …".
            Err(ReplicationError::Stream(pgwire_replication::PgWireError::Server(message)))
                if attempts < 50 && in_use(&message) =>
            {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

fn in_use(message: &str) -> bool {
    message.contains("55006") || message.contains("is active for PID")
}
