//! A fresh database per test.

use std::sync::atomic::{AtomicU32, Ordering};

use crate::cluster::{Cluster, server};

/// A database created for one test and dropped (with its replication slots) when dropped.
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    cluster: Cluster,
}

impl TestDatabase {
    /// Creates a new, empty database on the test cluster.
    pub async fn create() -> TestDatabase {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let cluster = server().clone();
        let name = format!(
            "t_{}_{}_{:06x}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            rand::random::<u32>() & 0xff_ffff
        );
        create_database(&cluster, &name).await;
        TestDatabase { name, cluster }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `postgres://postgres@127.0.0.1:PORT/NAME`.
    pub fn url(&self) -> String {
        self.cluster.url(&self.name)
    }

    /// The URL of another database on the same server (e.g. a storage database).
    pub fn server_url(&self, dbname: &str) -> String {
        self.cluster.url(dbname)
    }

    pub fn config(&self) -> tokio_postgres::Config {
        self.url().parse().expect("test database URL parses")
    }

    /// A new connection to this database (its connection task runs on the current runtime).
    pub async fn client(&self) -> tokio_postgres::Client {
        connect(&self.url()).await
    }

    /// Creates another fresh database on the same server, dropped together with this one.
    pub async fn sibling(&self, suffix: &str) -> TestDatabase {
        let name = format!("{}_{suffix}", self.name);
        create_database(&self.cluster, &name).await;
        TestDatabase {
            name,
            cluster: self.cluster.clone(),
        }
    }
}

/// `CREATE DATABASE`, retried while another session is copying the template at the same moment
/// (Postgres refuses a second copy with 55006 "source database is being accessed by other
/// users", which parallel tests hit under load).
async fn create_database(cluster: &Cluster, name: &str) {
    let admin = connect(&cluster.url("postgres")).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        match admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
        {
            Ok(()) => return,
            Err(e)
                if e.code() == Some(&tokio_postgres::error::SqlState::OBJECT_IN_USE)
                    && std::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => {
                let detail = e.as_db_error().map(|d| d.message().to_owned());
                panic!("CREATE DATABASE {name}: {e} {}", detail.unwrap_or_default())
            }
        }
    }
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        let url = self.cluster.url("postgres");
        // Dropping needs async IO; do it on a thread with its own runtime so it works from
        // inside or outside a tokio runtime.
        let handle = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let Ok((client, conn)) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await
                else {
                    return;
                };
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                for _ in 0..20 {
                    let _ = client
                        .execute(
                            "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots \
                             WHERE database = $1 AND active_pid IS NOT NULL",
                            &[&name],
                        )
                        .await;
                    let _ = client
                        .execute(
                            "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
                             WHERE database = $1 AND NOT active",
                            &[&name],
                        )
                        .await;
                    if client
                        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await
                        .is_ok()
                    {
                        return;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            });
        });
        let _ = handle.join();
    }
}
