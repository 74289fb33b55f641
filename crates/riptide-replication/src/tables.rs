//! Live table-set changes while streaming: a referenced table that appears (created in or
//! added to the publication, renamed to a referenced name) is copied; one that disappears
//! (dropped, removed from the publication, renamed away) has its rows removed.
//!
//! pgoutput says nothing about `DROP TABLE` or publication membership, and sends a table's
//! Relation message only before its first change, so the applier compares the catalog with
//! what it tracks: `tracked` maps each referenced table name that is published to the
//! relation OID whose stream changes are applied under that name. The check runs between
//! source transactions, at most every [`StreamOptions::catalog_check_interval`] (on
//! keepalives and the idle timer, and after commits), and right after a transaction in which
//! a Relation message named a referenced table with an untracked OID (or a tracked OID under
//! another name).
//!
//! When the catalog differs, the applier *resyncs* at the current stream position P (the end
//! of the last transaction it processed):
//!
//! 1. A temporary logical slot is created on a separate walsender session with
//!    `EXPORT_SNAPSHOT`. Its consistent point C and the exported snapshot agree exactly, as
//!    for the initial snapshot: the snapshot sees every transaction whose commit record is
//!    before C and none after.
//! 2. On an ordinary connection, in a `REPEATABLE READ` transaction importing that snapshot,
//!    the referenced published tables are read from the catalog again (the truth at C), then
//!    each new table's rows are copied through a cursor in chunks (bounded memory, as in
//!    `snapshot.rs`).
//! 3. One storage batch holds a `Truncate` for every name whose table went away or changed,
//!    then the copied rows as upserts; it commits at P (so the resume position never moves
//!    past an unprocessed transaction).
//! 4. Gates on relation OIDs: a copied table's changes in transactions whose commit LSN is
//!    before C are skipped (the copy has them; this is how they are neither lost nor applied
//!    twice, and rows never go back in time). A table that went away has its changes before
//!    C skipped too: the stream may still carry changes made before the DDL (which is before
//!    C), and they must not bring rows back. After C such an OID has no changes (dropped,
//!    unpublished) or arrives under an unreferenced name (renamed away); if it comes back
//!    under a referenced name, its Relation message or the next check copies it again.
//!    These gates expire once the stream passes them. A `Blocked` gate (see [`Gate`]) on an
//!    OID that no longer has a referenced name stays; while any gate exists, each change
//!    costs one hash lookup.
//!
//! When tables only went away, no copy is needed: the removal uses the catalog as read,
//! creates no slot, and gates the removed OIDs up to `pg_current_wal_insert_lsn()` read after
//! the catalog (after the DDL; the insert position, because with `synchronous_commit = off`
//! the write position `pg_current_wal_lsn()` can be behind committed transactions).
//! Creating the temporary slot waits for the source's transactions running at that moment
//! to end, so a copy (and the stream, meanwhile) waits behind a long transaction. The walsender session keeps answering keepalives in the background while
//! the stream pauses for the copy.
//!
//! Gated OIDs are rare; the hot path only checks that the gate map is empty.
//!
//! The tracked set is stored with every storage commit that changes it (the initial
//! snapshot, each resync and removal), in the same batch, as the current row state of a
//! pseudo source table ([`TRACKED_SOURCE`], a name no `schema.table` can have: it has no
//! dot). A restarted replicator starts from the stored set, so a table added to or removed
//! from the publication, dropped, created or renamed while it was stopped differs from it at
//! the first catalog check and is copied or removed as if it had happened live (column
//! changes need nothing: the stream replays them from the stored position). Deployments
//! written before the set was stored start from the catalog at start-up and store it.
//! A resync with a temporary slot interrupted by a restart may replay some of the copied
//! table's older changes, which converge to the same rows.
//!
//! A table removed from the publication and added back between two catalog checks keeps its
//! relation OID, but gets a new `pg_publication_rel` row: the tracked set holds that row's
//! OID too ([`Published`]), so the check sees the change and copies the table again (changes
//! made while it was out were never streamed). Membership through `FOR TABLES IN SCHEMA`
//! is not told apart this way (it counts as the publication's own row).

use std::collections::HashMap;

use riptide_protocol::Lsn;
use riptide_rules::{Row, SqliteValue, TableRef};
use riptide_storage::{BatchOperation, BucketStorage, DeploymentId, RowChange, RowOperation};
use tokio_postgres::GenericClient;

use crate::error::ReplicationError;

/// Pseudo source table whose one current row stores the tracked set: not `schema.table`
/// (no dot), so no real table's rows share it.
pub const TRACKED_SOURCE: &str = "riptide:tracked_tables";

/// Key of that row.
const TRACKED_KEY: &[u8] = b"tracked";

/// The storage operation recording `tracked`; saved in the batch of every commit that
/// changes it. Each table is one integer: membership OID × 2³² + relation OID.
pub fn tracked_op(tracked: &Tracked) -> BatchOperation {
    let mut names: Vec<(&String, &Published)> = tracked.iter().collect();
    names.sort_by(|a, b| a.0.cmp(b.0));
    let mut row = Row::new();
    for (name, p) in names {
        let packed = (i64::from(p.membership) << 32) | i64::from(p.oid);
        row.insert(name.clone(), SqliteValue::Integer(packed));
    }
    BatchOperation::Row(RowOperation {
        source_table: TRACKED_SOURCE.to_owned(),
        key: TRACKED_KEY.to_vec(),
        change: RowChange::Upsert {
            row: row.encode(),
            buckets: Vec::new(),
            parameters: Vec::new(),
        },
    })
}

/// The tracked set stored by [`tracked_op`], if the deployment has one.
pub async fn stored_tracked(
    storage: &dyn BucketStorage,
    deployment: DeploymentId,
) -> Result<Option<Tracked>, ReplicationError> {
    let rows = storage
        .current_rows(deployment, TRACKED_SOURCE, &[TRACKED_KEY.to_vec()])
        .await?;
    let Some(bytes) = rows.get(TRACKED_KEY) else {
        return Ok(None);
    };
    let row = Row::decode(bytes).map_err(ReplicationError::TrackedDecode)?;
    let mut tracked = HashMap::with_capacity(row.0.len());
    for (name, value) in row.0 {
        let packed = match value {
            SqliteValue::Integer(i) => u64::try_from(i).ok(),
            _ => None,
        }
        .ok_or_else(|| ReplicationError::TrackedOid(name.clone()))?;
        let (Ok(membership), Ok(oid)) = (
            u32::try_from(packed >> 32),
            u32::try_from(packed & 0xffff_ffff),
        ) else {
            return Err(ReplicationError::TrackedOid(name));
        };
        tracked.insert(name, Published { oid, membership });
    }
    Ok(Some(tracked))
}

/// How a referenced table is published: its relation OID, and the OID of the catalog row
/// that puts it in the publication (its `pg_publication_rel` row, or the publication's own
/// row for `FOR ALL TABLES` and schema membership). A table removed from the publication and
/// added back gets a new membership row, so a check that missed both steps still sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    pub oid: u32,
    pub membership: u32,
}

/// Referenced published tables by qualified name.
pub type Tracked = HashMap<String, Published>;

/// Relation OID → qualified name of `tracked`.
pub fn oid_names(tracked: &Tracked) -> HashMap<u32, String> {
    tracked.iter().map(|(k, p)| (p.oid, k.clone())).collect()
}

/// What happens to stream changes of one relation OID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Every change is ignored: a Relation message named a referenced table with an OID not
    /// streamed under that name; the next catalog check decides (copy or nothing).
    Blocked,
    /// Changes of transactions whose commit LSN is before this are ignored (a copy has them).
    Before(Lsn),
}

impl Gate {
    /// Whether a change of the transaction committing at `final_lsn` passes.
    pub fn passes(self, final_lsn: Lsn) -> bool {
        match self {
            Gate::Blocked => false,
            Gate::Before(c) => final_lsn >= c,
        }
    }
}

/// Referenced tables that exist and are in `publication`: qualified name → relation OID and
/// membership.
pub async fn published(
    client: &impl GenericClient,
    publication: &str,
    tables: &[TableRef],
) -> Result<Tracked, ReplicationError> {
    let schemas: Vec<&str> = tables.iter().map(|t| t.schema.as_str()).collect();
    let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
    let rows = client
        .query(
            "SELECT n.nspname::text, c.relname::text, c.oid::int8, \
                    COALESCE(pr.oid, p.oid)::int8 \
             FROM unnest($2::text[], $3::text[]) AS t(s, r) \
             JOIN pg_namespace n ON n.nspname = t.s \
             JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = t.r AND c.relkind IN ('r', 'p') \
             JOIN pg_publication p ON p.pubname = $1 \
             LEFT JOIN pg_publication_rel pr ON pr.prpubid = p.oid AND pr.prrelid = c.oid \
             WHERE EXISTS (SELECT 1 FROM pg_publication_tables pt \
                           WHERE pt.pubname = $1 AND pt.schemaname = n.nspname AND pt.tablename = c.relname)",
            &[&publication, &schemas, &names],
        )
        .await?;
    let mut out = HashMap::with_capacity(rows.len());
    for row in rows {
        let schema: String = row.try_get(0)?;
        let name: String = row.try_get(1)?;
        let oid = |i: usize| -> Result<u32, ReplicationError> {
            u32::try_from(row.try_get::<_, i64>(i)?)
                .map_err(|_| ReplicationError::Catalog("oid out of range".into()))
        };
        let published = Published {
            oid: oid(2)?,
            membership: oid(3)?,
        };
        out.insert(TableRef::new(schema, name).qualified(), published);
    }
    Ok(out)
}
