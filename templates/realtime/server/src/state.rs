//! The state shared by all requests.

use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};

use crate::StartError;
use crate::auth::password;
use crate::auth::password::Hasher;
use crate::auth::rate_limit::AuthLimiter;
use crate::config::Config;
use crate::upload::catalog::{Catalog, CatalogError};

/// How old the catalog must be before a request may trigger a reload.
const CATALOG_MIN_AGE: Duration = Duration::from_secs(1);

/// Cheap to clone: everything is behind one `Arc`.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    pool: Pool,
    /// Replaced when a migration applied while the process runs (e.g. by `riptide dev`) adds
    /// tables or columns: see [`AppState::reload_catalog`].
    catalog: RwLock<Arc<Catalog>>,
    catalog_loaded: Mutex<Instant>,
    limiter: AuthLimiter,
    hasher: Hasher,
    dummy_hash: String,
}

impl AppState {
    /// Opens the database pool and reads the schema catalog (after migrations ran).
    pub async fn connect(config: Config) -> Result<AppState, StartError> {
        let pg: tokio_postgres::Config =
            config.database_url.parse().map_err(StartError::Connect)?;
        let manager = Manager::from_config(
            pg,
            tokio_postgres::NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(16)
            .build()
            .map_err(StartError::Pool)?;
        let client = pool
            .get()
            .await
            .map_err(|e| StartError::Catalog(CatalogError::Pool(e)))?;
        let catalog = Catalog::load(&client).await?;
        if let Err(err) = crate::upload::prune_applied(&client).await {
            tracing::warn!(error = %err, "cannot prune old upload records");
        }
        drop(client);
        let dummy_hash = password::dummy_hash();
        let limiter = AuthLimiter::new(&config.limits);
        let hasher = Hasher::new(&config.limits).map_err(StartError::Threads)?;
        Ok(AppState {
            inner: Arc::new(Inner {
                config,
                pool,
                catalog: RwLock::new(Arc::new(catalog)),
                catalog_loaded: Mutex::new(Instant::now()),
                limiter,
                hasher,
                dummy_hash,
            }),
        })
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    /// The schema catalog as last read.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.inner
            .catalog
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Reads the catalog again (at most once a second, so unknown names in requests cannot
    /// make every request query the catalog); `None` when it was read too recently.
    pub async fn reload_catalog(&self) -> Result<Option<Arc<Catalog>>, CatalogError> {
        {
            let mut loaded = self
                .inner
                .catalog_loaded
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if loaded.elapsed() < CATALOG_MIN_AGE {
                return Ok(None);
            }
            *loaded = Instant::now();
        }
        let client = self.pool().get().await.map_err(CatalogError::Pool)?;
        let fresh = Arc::new(Catalog::load(&client).await?);
        *self
            .inner
            .catalog
            .write()
            .unwrap_or_else(|e| e.into_inner()) = fresh.clone();
        tracing::info!(tables = fresh.tables.len(), "schema catalog reloaded");
        Ok(Some(fresh))
    }

    /// The sign-in and sign-up rate limits.
    pub fn limiter(&self) -> &AuthLimiter {
        &self.inner.limiter
    }

    /// Password hashing, a bounded number at once.
    pub fn hasher(&self) -> &Hasher {
        &self.inner.hasher
    }

    /// A hash to verify against when the username does not exist, so that a wrong username
    /// takes as long as a wrong password.
    pub fn dummy_hash(&self) -> &str {
        &self.inner.dummy_hash
    }
}
