//! Checks that the source database can replicate what the sync rules need. Every problem is a
//! [`SourceError`] whose message says how to fix it.

use riptide_rules::TableRef;
use tokio_postgres::Client;

use crate::error::ReplicationError;

/// One problem with the source database's setup.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    #[error(
        "wal_level is {found}, not logical: run `ALTER SYSTEM SET wal_level = logical;` then restart Postgres"
    )]
    WalLevel { found: String },
    #[error(
        "max_replication_slots is 0: run `ALTER SYSTEM SET max_replication_slots = 10;` then restart Postgres"
    )]
    NoReplicationSlots,
    #[error(
        "max_wal_senders is 0: run `ALTER SYSTEM SET max_wal_senders = 10;` then restart Postgres"
    )]
    NoWalSenders,
    #[error("user {user} may not replicate: run `ALTER ROLE {user} WITH REPLICATION;`")]
    NoReplicationRole { user: String },
    #[error(
        "publication {publication} does not exist: run `CREATE PUBLICATION {publication} FOR ALL TABLES;`"
    )]
    PublicationMissing { publication: String },
    #[error(
        "publication {publication} does not publish {missing}: run `ALTER PUBLICATION {publication} SET (publish = 'insert, update, delete, truncate');`"
    )]
    PublicationOperations {
        publication: String,
        missing: String,
    },
    #[error(
        "publication {publication} publishes via the partition root, which is not supported: run `ALTER PUBLICATION {publication} SET (publish_via_partition_root = false);`"
    )]
    PublishViaPartitionRoot { publication: String },
    #[error(
        "table {table} used by the sync rules does not exist: create it or change the sync rules"
    )]
    TableMissing { table: String },
    #[error(
        "table {table} is not in publication {publication}: run `ALTER PUBLICATION {publication} ADD TABLE {table};`"
    )]
    TableNotPublished { table: String, publication: String },
    #[error(
        "table {table} has REPLICA IDENTITY NOTHING, so its updates and deletes cannot be replicated: run `ALTER TABLE {table} REPLICA IDENTITY DEFAULT;` (with a primary key) or `ALTER TABLE {table} REPLICA IDENTITY FULL;`"
    )]
    ReplicaIdentityNothing { table: String },
    #[error(
        "table {table} has no primary key, so its updates and deletes cannot be replicated: add a primary key or run `ALTER TABLE {table} REPLICA IDENTITY FULL;`"
    )]
    NoPrimaryKey { table: String },
}

/// Runs every check and returns all problems found (an empty list: ready).
pub async fn check(
    client: &Client,
    publication: &str,
    tables: &[TableRef],
) -> Result<Vec<SourceError>, ReplicationError> {
    let mut problems = Vec::new();

    let row = client
        .query_one(
            "SELECT current_setting('wal_level'), \
                    current_setting('max_replication_slots')::int4, \
                    current_setting('max_wal_senders')::int4, \
                    current_user::text, \
                    COALESCE((SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user), false)",
            &[],
        )
        .await?;
    let wal_level: String = row.try_get(0)?;
    if wal_level != "logical" {
        problems.push(SourceError::WalLevel { found: wal_level });
    }
    if row.try_get::<_, i32>(1)? <= 0 {
        problems.push(SourceError::NoReplicationSlots);
    }
    if row.try_get::<_, i32>(2)? <= 0 {
        problems.push(SourceError::NoWalSenders);
    }
    let user: String = row.try_get(3)?;
    if !row.try_get::<_, bool>(4)? {
        problems.push(SourceError::NoReplicationRole { user });
    }

    // row_to_json keeps this working on versions without `pubviaroot` (Postgres < 13).
    let publication_row = client
        .query_opt(
            "SELECT row_to_json(p)::text FROM pg_publication p WHERE pubname = $1",
            &[&publication],
        )
        .await?;
    let Some(publication_row) = publication_row else {
        problems.push(SourceError::PublicationMissing {
            publication: publication.to_owned(),
        });
        // Table membership cannot be checked without the publication; existence and
        // identity still can.
        check_tables(client, publication, tables, false, &mut problems).await?;
        return Ok(problems);
    };
    let json: String = publication_row.try_get(0)?;
    let p: serde_json::Value = serde_json::from_str(&json)
        .map_err(|_| ReplicationError::Catalog("pg_publication row is not JSON".into()))?;
    let flag = |name: &str| p.get(name).and_then(serde_json::Value::as_bool);
    let missing: Vec<&str> = ["insert", "update", "delete", "truncate"]
        .into_iter()
        .filter(|op| flag(&format!("pub{op}")) != Some(true))
        .collect();
    if !missing.is_empty() {
        problems.push(SourceError::PublicationOperations {
            publication: publication.to_owned(),
            missing: missing.join(", "),
        });
    }
    if flag("pubviaroot") == Some(true) {
        problems.push(SourceError::PublishViaPartitionRoot {
            publication: publication.to_owned(),
        });
    }
    check_tables(client, publication, tables, true, &mut problems).await?;
    Ok(problems)
}

async fn check_tables(
    client: &Client,
    publication: &str,
    tables: &[TableRef],
    publication_exists: bool,
    problems: &mut Vec<SourceError>,
) -> Result<(), ReplicationError> {
    for table in tables {
        let name = table.qualified();
        let row = client
            .query_opt(
                "SELECT c.relreplident::text, \
                        EXISTS (SELECT 1 FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary), \
                        EXISTS (SELECT 1 FROM pg_publication_tables pt \
                                WHERE pt.pubname = $3 AND pt.schemaname = n.nspname AND pt.tablename = c.relname) \
                 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relname = $2 AND c.relkind IN ('r', 'p')",
                &[&table.schema, &table.name, &publication],
            )
            .await?;
        let Some(row) = row else {
            problems.push(SourceError::TableMissing { table: name });
            continue;
        };
        let identity: String = row.try_get(0)?;
        let has_pk: bool = row.try_get(1)?;
        let published: bool = row.try_get(2)?;
        if publication_exists && !published {
            problems.push(SourceError::TableNotPublished {
                table: name.clone(),
                publication: publication.to_owned(),
            });
        }
        match identity.as_str() {
            "n" => problems.push(SourceError::ReplicaIdentityNothing { table: name }),
            "d" if !has_pk => problems.push(SourceError::NoPrimaryKey { table: name }),
            _ => {}
        }
    }
    Ok(())
}
