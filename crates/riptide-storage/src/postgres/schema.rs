//! The storage schema, one SQL text per migration. Text key columns use `COLLATE "C"`: byte
//! order, and index comparisons by `memcmp` instead of the database's locale. Documented table by table in
//! `docs/storage.md`; keep the two in step.

/// Version 1: deployments, op log, running bucket totals, current rows, parameter lookups,
/// write checkpoints.
pub(super) const V1: &str = r#"
CREATE TABLE riptide.deployments (
    id                  bigserial PRIMARY KEY,
    content             text        NOT NULL,
    state               text        NOT NULL
        CHECK (state IN ('PROCESSING', 'ACTIVE', 'STOP', 'TERMINATED')),
    slot_name           text        NOT NULL UNIQUE,
    snapshot_done       boolean     NOT NULL DEFAULT false,
    last_op_id          bigint      NOT NULL DEFAULT 0,
    last_checkpoint_lsn pg_lsn,
    resume_lsn          pg_lsn,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    last_commit_at      timestamptz
);
CREATE UNIQUE INDEX deployments_one_active ON riptide.deployments ((true)) WHERE state = 'ACTIVE';

CREATE TABLE riptide.bucket_data (
    deployment_id bigint NOT NULL,
    bucket        text   COLLATE "C" NOT NULL,
    op_id         bigint NOT NULL,
    op            text   NOT NULL CHECK (op IN ('PUT', 'REMOVE', 'MOVE', 'CLEAR')),
    object_type   text,
    object_id     text,
    subkey        text,
    checksum      bigint NOT NULL,
    data          text,
    PRIMARY KEY (deployment_id, bucket, op_id)
);

CREATE TABLE riptide.bucket_state (
    deployment_id bigint NOT NULL,
    bucket        text   COLLATE "C" NOT NULL,
    checksum      bigint NOT NULL,
    op_count      bigint NOT NULL,
    last_op_id    bigint NOT NULL,
    PRIMARY KEY (deployment_id, bucket)
);

CREATE TABLE riptide.current_data (
    deployment_id bigint NOT NULL,
    source_table  text   COLLATE "C" NOT NULL,
    source_key    bytea  NOT NULL,
    data          bytea  NOT NULL,
    buckets       bytea  NOT NULL,
    lookups       bytea  NOT NULL,
    PRIMARY KEY (deployment_id, source_table, source_key)
);

CREATE TABLE riptide.parameter_lookups (
    deployment_id bigint NOT NULL,
    lookup        bytea  NOT NULL,
    source_table  text   COLLATE "C" NOT NULL,
    source_key    bytea  NOT NULL,
    result        bytea  NOT NULL
);
CREATE INDEX parameter_lookups_by_lookup
    ON riptide.parameter_lookups (deployment_id, lookup);
CREATE INDEX parameter_lookups_by_row
    ON riptide.parameter_lookups (deployment_id, source_table, source_key);

CREATE TABLE riptide.write_checkpoint_counters (
    user_id    text        COLLATE "C" NOT NULL,
    client_id  text        COLLATE "C" NOT NULL,
    last_id    bigint      NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, client_id)
);

CREATE TABLE riptide.write_checkpoints (
    user_id    text        COLLATE "C" NOT NULL,
    client_id  text        COLLATE "C" NOT NULL,
    id         bigint      NOT NULL,
    lsn        pg_lsn      NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, client_id, id)
);
"#;

/// Version 2: compaction. Per bucket, `superseded` counts ops written since the bucket was last
/// compacted that superseded an earlier op of the same row (existing buckets start at their op
/// count: not examined yet), and `compacted_at_op` is the deployment checkpoint its last
/// compaction that changed something ran at (0: never). Per deployment, `data_epoch` goes up
/// with every `reset_snapshot`, so a compaction started on the old data stops.
pub(super) const V2: &str = r#"
ALTER TABLE riptide.bucket_state
    ADD COLUMN superseded      bigint NOT NULL DEFAULT 0,
    ADD COLUMN compacted_at_op bigint NOT NULL DEFAULT 0;
UPDATE riptide.bucket_state SET superseded = op_count;
ALTER TABLE riptide.deployments ADD COLUMN data_epoch bigint NOT NULL DEFAULT 0;
"#;

/// Version 3: the replication lease (holder, fencing epoch, heartbeat) and the nodes of the
/// storage (`riptide serve` processes, their role and address), see `postgres/lease.rs`.
pub(super) const V3: &str = r#"
CREATE TABLE riptide.leases (
    name         text        COLLATE "C" PRIMARY KEY,
    holder       text        NOT NULL,
    epoch        bigint      NOT NULL,
    heartbeat_at timestamptz NOT NULL,
    acquired_at  timestamptz NOT NULL
);
CREATE TABLE riptide.nodes (
    id           text        COLLATE "C" PRIMARY KEY,
    role         text        NOT NULL,
    address      text        NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    lease_epoch  bigint
);
-- The lease epoch of the last fenced commit (NULL: unfenced), so anyone can check which
-- holder wrote last.
ALTER TABLE riptide.deployments ADD COLUMN lease_epoch bigint;
"#;
