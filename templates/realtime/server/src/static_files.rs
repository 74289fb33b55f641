//! Serves the built UI (`web/dist`) with a fallback to `index.html` for client-side routes.
//! In development the Vite dev server serves the UI and proxies `/api` here instead.

use std::path::Path;

use axum::Router;
use tower_http::services::{ServeDir, ServeFile};

/// Adds the UI under `/` when `dist` exists (`/api` routes take precedence).
pub fn with_ui(router: Router, dist: &Path) -> Router {
    if !dist.is_dir() {
        tracing::info!(path = %dist.display(), "no built UI: serving the API only");
        return router;
    }
    let index = dist.join("index.html");
    router.fallback_service(ServeDir::new(dist).fallback(ServeFile::new(index)))
}
