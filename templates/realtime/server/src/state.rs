//! The state shared by all requests.

use std::sync::Arc;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};

use crate::StartError;
use crate::auth::password;
use crate::auth::rate_limit::LoginLimiter;
use crate::config::Config;
use crate::upload::catalog::{Catalog, CatalogError};

/// Cheap to clone: everything is behind one `Arc`.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    pool: Pool,
    catalog: Catalog,
    limiter: LoginLimiter,
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
        Ok(AppState {
            inner: Arc::new(Inner {
                config,
                pool,
                catalog,
                limiter: LoginLimiter::default(),
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

    pub fn catalog(&self) -> &Catalog {
        &self.inner.catalog
    }

    pub fn limiter(&self) -> &LoginLimiter {
        &self.inner.limiter
    }

    /// A hash to verify against when the username does not exist, so that a wrong username
    /// takes as long as a wrong password.
    pub fn dummy_hash(&self) -> &str {
        &self.inner.dummy_hash
    }
}
