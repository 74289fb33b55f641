//! `diagnostics` and `validate`: the source connection, and rules (deployed or submitted)
//! against the source database, in `@powersync/service-types`' shapes.

use riptide_replication::StatusSnapshot;
use riptide_rules::SyncRules;
use riptide_service::CurrentRules;
use riptide_service::instance_admin::{
    ConnectionStatus, DeploymentConnection, Diagnostics, ReplicationIssue, SyncRulesStatus,
    TableInfo,
};
use riptide_storage::Deployment;
use tokio_postgres::Client;

use super::{CONNECTION_ID, Instance, chain};
use crate::schema_check::{self, Problem};

/// `POST /api/admin/v1/diagnostics`.
pub(super) async fn diagnostics(
    instance: &Instance,
    current: CurrentRules,
    status: &StatusSnapshot,
    include_content: bool,
) -> Diagnostics {
    let (connection, client) = connection_status(instance).await;
    let mut active = None;
    if let Some(d) = current.current {
        let live = Live {
            client: client.as_ref(),
            last_commit_ms: status.last_commit.and_then(|t| {
                t.duration_since(std::time::UNIX_EPOCH)
                    .ok()
                    .map(|d| d.as_millis() as i64)
            }),
        };
        active = Some(deployment_status(instance, &d, include_content, live).await);
    }
    let mut deploying = None;
    if let Some(d) = current.next {
        let live = Live {
            client: client.as_ref(),
            last_commit_ms: None,
        };
        deploying = Some(deployment_status(instance, &d, include_content, live).await);
    }
    Diagnostics {
        connections: vec![connection],
        active_sync_rules: active,
        deploying_sync_rules: deploying,
    }
}

/// `POST /api/admin/v1/validate`: `content` as a deployment that has not replicated yet.
pub(super) async fn validate(instance: &Instance, content: &str) -> SyncRulesStatus {
    let rules = match SyncRules::parse(content) {
        Ok(r) => r,
        Err(errors) => {
            return SyncRulesStatus {
                content: None,
                connections: Vec::new(),
                errors: errors
                    .0
                    .iter()
                    .map(|e| located(&e.message, e.line, e.column))
                    .collect(),
            };
        }
    };
    let (tables, errors) = tables(instance, &rules).await;
    SyncRulesStatus {
        content: None,
        connections: vec![DeploymentConnection {
            id: CONNECTION_ID.into(),
            tag: CONNECTION_ID.into(),
            slot_name: String::new(),
            initial_replication_done: false,
            last_lsn: None,
            last_keepalive_ts: None,
            last_checkpoint_ts: None,
            replication_lag_bytes: None,
            wal_status: None,
            tables,
        }],
        errors,
    }
}

/// What the source says about a deployment's slot, when connected.
struct Live<'a> {
    client: Option<&'a Client>,
    /// The serving replicator's last storage commit (ms since the epoch).
    last_commit_ms: Option<i64>,
}

async fn deployment_status(
    instance: &Instance,
    d: &Deployment,
    include_content: bool,
    live: Live<'_>,
) -> SyncRulesStatus {
    let content = include_content.then(|| d.content.clone());
    let rules = match SyncRules::parse(&d.content) {
        Ok(r) => r,
        Err(e) => {
            return SyncRulesStatus {
                content,
                connections: Vec::new(),
                errors: vec![ReplicationIssue::fatal(e.to_string())],
            };
        }
    };
    let (tables, mut errors) = if live.client.is_some() {
        tables(instance, &rules).await
    } else {
        (Vec::new(), Vec::new())
    };
    let mut slot = SlotStatus::default();
    if let Some(client) = live.client {
        match slot_status(client, &d.slot_name, live.last_commit_ms).await {
            Ok(Some(s)) => slot = s,
            Ok(None) => errors.push(ReplicationIssue::fatal(format!(
                "replication slot {} does not exist on the source database",
                d.slot_name
            ))),
            Err(e) => errors.push(ReplicationIssue::warning(format!(
                "cannot read the replication slot: {}",
                chain(&e)
            ))),
        }
    }
    SyncRulesStatus {
        content,
        connections: vec![DeploymentConnection {
            id: CONNECTION_ID.into(),
            tag: CONNECTION_ID.into(),
            slot_name: d.slot_name.clone(),
            initial_replication_done: d.snapshot_done,
            last_lsn: d.resume_lsn.map(|l| l.to_string()),
            last_keepalive_ts: None,
            last_checkpoint_ts: slot.last_commit_ts,
            replication_lag_bytes: slot.lag_bytes,
            wal_status: slot.wal_status,
            tables,
        }],
        errors,
    }
}

/// The rules' tables and their problems; a failed check is one fatal error.
async fn tables(instance: &Instance, rules: &SyncRules) -> (Vec<TableInfo>, Vec<ReplicationIssue>) {
    match schema_check::table_reports(rules, &instance.source, &instance.publication).await {
        Ok((reports, problems)) => {
            let tables = reports
                .into_iter()
                .map(|r| TableInfo {
                    schema: r.table.schema.clone(),
                    name: r.table.name.clone(),
                    pattern: None,
                    replication_id: r.replication_id,
                    data_queries: r.data_queries,
                    parameter_queries: r.parameter_queries,
                    errors: r.issues.into_iter().map(ReplicationIssue::fatal).collect(),
                })
                .collect();
            let errors = problems
                .iter()
                .map(
                    |Problem {
                         line,
                         column,
                         message,
                     }| located(message, *line, *column),
                )
                .collect();
            (tables, errors)
        }
        Err(e) => (
            Vec::new(),
            vec![ReplicationIssue::fatal(format!(
                "cannot check the tables: {}",
                chain(&e)
            ))],
        ),
    }
}

fn located(message: &str, line: usize, column: usize) -> ReplicationIssue {
    ReplicationIssue::fatal(format!("{message} (line {line}, column {column})"))
}

/// The source connection: reachable, `wal_level = logical`, the publication present. The
/// client is returned for the other checks when connected.
async fn connection_status(instance: &Instance) -> (ConnectionStatus, Option<Client>) {
    let mut status = ConnectionStatus {
        id: CONNECTION_ID.into(),
        postgres_uri: redacted_uri(&instance.source),
        connected: false,
        errors: Vec::new(),
    };
    let client = match riptide_replication::connect(&instance.source).await {
        Ok(c) => c,
        Err(e) => {
            status.errors.push(ReplicationIssue::fatal(chain(&e)));
            return (status, None);
        }
    };
    status.connected = true;
    match client
        .query_one(
            "SELECT current_setting('wal_level'), \
                    EXISTS (SELECT 1 FROM pg_publication WHERE pubname = $1)",
            &[&instance.publication],
        )
        .await
    {
        Ok(row) => {
            let wal_level: String = row.get(0);
            if wal_level != "logical" {
                status.errors.push(ReplicationIssue::fatal(format!(
                    "wal_level is {wal_level}, not logical: run `ALTER SYSTEM SET wal_level = logical;` then restart Postgres"
                )));
            }
            if !row.get::<_, bool>(1) {
                let p = &instance.publication;
                status.errors.push(ReplicationIssue::fatal(format!(
                    "publication {p} does not exist: run `CREATE PUBLICATION {p} FOR ALL TABLES;`"
                )));
            }
        }
        Err(e) => status.errors.push(ReplicationIssue::fatal(chain(&e))),
    }
    (status, Some(client))
}

#[derive(Debug, Default)]
struct SlotStatus {
    lag_bytes: Option<u64>,
    wal_status: Option<String>,
    last_commit_ts: Option<String>,
}

/// The slot's lag behind the source's WAL position, its WAL status, and the last commit time
/// formatted by Postgres (RFC 3339, UTC). `None`: no such slot.
async fn slot_status(
    client: &Client,
    slot: &str,
    last_commit_ms: Option<i64>,
) -> Result<Option<SlotStatus>, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT GREATEST(pg_current_wal_lsn() - COALESCE(confirmed_flush_lsn, restart_lsn), 0)::int8, \
                    wal_status::text, \
                    to_char(to_timestamp($2::int8 / 1000.0) AT TIME ZONE 'UTC', \
                            'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') \
             FROM pg_replication_slots WHERE slot_name = $1",
            &[&slot, &last_commit_ms],
        )
        .await?;
    Ok(row.map(|row| SlotStatus {
        lag_bytes: row
            .get::<_, Option<i64>>(0)
            .and_then(|v| u64::try_from(v).ok()),
        wal_status: row.get(1),
        last_commit_ts: row.get(2),
    }))
}

/// `postgresql://user@host:port/database`, without the password.
fn redacted_uri(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("postgres");
    let db = config.get_dbname().unwrap_or(user);
    format!("postgresql://{user}@{host}:{port}/{db}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_uri_leaves_the_password_out() {
        let config: tokio_postgres::Config = "postgresql://app:s3cret@db.example:6543/shop"
            .parse()
            .expect("a valid URI");
        let uri = redacted_uri(&config);
        assert_eq!(uri, "postgresql://app@db.example:6543/shop");
        assert!(!uri.contains("s3cret"));
    }
}
