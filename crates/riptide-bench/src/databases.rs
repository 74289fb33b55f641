//! The bench cluster's databases: `bench_source` (the tables the rules read, published to
//! `powersync`) and `bench_storage` (the service's bucket storage), and the connections the
//! scenarios write through.

use anyhow::Result;

use crate::connect;

/// The source database, set up, and two connections to it.
pub struct Databases {
    pub pg_port: u16,
    /// For the bulk insert.
    pub source: tokio_postgres::Client,
    /// For the live scenarios' paced writes.
    pub writer: tokio_postgres::Client,
    /// Whether writers keep the cluster's `synchronous_commit = off` (`--async-commit-writer`).
    pub async_commit: bool,
}

impl Databases {
    /// Creates both databases, the source's tables and its publication.
    pub async fn create(pg_port: u16, async_commit: bool) -> Result<Databases> {
        let admin = connect(&riptide_localpg::url(pg_port, "postgres")).await?;
        admin.batch_execute("CREATE DATABASE bench_source").await?;
        admin.batch_execute("CREATE DATABASE bench_storage").await?;
        let source = connect(&source_url(pg_port)).await?;
        source
            .batch_execute(
                "CREATE TABLE items (id text PRIMARY KEY, n bigint NOT NULL, label text NOT NULL, \
                 created_at timestamptz NOT NULL DEFAULT now());
                 CREATE TABLE events (id text PRIMARY KEY, topic text NOT NULL, seq integer NOT NULL, \
                 sent_us bigint NOT NULL);
                 CREATE PUBLICATION powersync FOR ALL TABLES;",
            )
            .await?;
        let writer = Databases::writer_for(pg_port, async_commit).await?;
        Ok(Databases {
            pg_port,
            source,
            writer,
            async_commit,
        })
    }

    /// Another writer connection to the source, committing as [`Databases::writer`] does.
    pub async fn new_writer(&self) -> Result<tokio_postgres::Client> {
        Databases::writer_for(self.pg_port, self.async_commit).await
    }

    // The live scenarios' writer commits as a production database would: the bench cluster
    // runs with synchronous_commit off, under which Postgres sends a commit to logical
    // replication only once the WAL writer has flushed it (every wal_writer_delay, 200 ms),
    // which would dominate the latency measured.
    async fn writer_for(pg_port: u16, async_commit: bool) -> Result<tokio_postgres::Client> {
        let writer = connect(&source_url(pg_port)).await?;
        if !async_commit {
            writer.batch_execute("SET synchronous_commit = on").await?;
        }
        Ok(writer)
    }
}

impl Databases {
    /// Until [`Databases::reset_commits`], the cluster commits as a production one does:
    /// `synchronous_commit = on` and Postgres's default `wal_writer_delay` (200 ms), as the
    /// platform's local cluster (`riptide dev`) has them. A reload, no restart.
    pub async fn commit_durably(&self) -> Result<()> {
        let admin = connect(&riptide_localpg::url(self.pg_port, "postgres")).await?;
        // One statement each: ALTER SYSTEM refuses a transaction block.
        for sql in [
            "ALTER SYSTEM SET synchronous_commit = on",
            "ALTER SYSTEM SET wal_writer_delay = '200ms'",
            "SELECT pg_reload_conf()",
        ] {
            admin.batch_execute(sql).await?;
        }
        Ok(())
    }

    /// Back to the bench cluster's own settings (see [`Databases::commit_durably`]).
    pub async fn reset_commits(&self) -> Result<()> {
        let admin = connect(&riptide_localpg::url(self.pg_port, "postgres")).await?;
        for sql in [
            "ALTER SYSTEM RESET synchronous_commit",
            "ALTER SYSTEM RESET wal_writer_delay",
            "SELECT pg_reload_conf()",
        ] {
            admin.batch_execute(sql).await?;
        }
        Ok(())
    }
}

pub fn source_url(pg_port: u16) -> String {
    riptide_localpg::url(pg_port, "bench_source")
}

pub fn storage_url(pg_port: u16) -> String {
    riptide_localpg::url(pg_port, "bench_storage")
}
