//! `deploy_sync_rules`: sends an app's `sync-rules.yaml` to its sync service's admin API.

use serde::Serialize;

use crate::database::LOCK_WAIT;
use crate::state::Store;
use crate::{Platform, PlatformError, app};

/// What `deploy_sync_rules` returns.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RulesInfo {
    pub app_id: String,
    pub sync_id: String,
    /// The deployment the service answered with (`{id, slot_name, state}`).
    pub deployment: serde_json::Value,
    /// The service already ran these exact rules (nothing deployed).
    pub already: bool,
}

/// Deploys the app's `sync-rules.yaml` through `POST /api/sync-rules/v1/deploy`.
pub async fn deploy_sync_rules(
    platform: &Platform,
    app_key: &str,
) -> Result<RulesInfo, PlatformError> {
    let store = Store::open(platform.home(), LOCK_WAIT).await?;
    let app = app::find(&store, app_key)?;
    let db_id = app.database_id.clone().ok_or_else(|| {
        PlatformError::Conflict(format!(
            "app {:?} is not connected to a database; run `riptide connect {} DATABASE` first",
            app.name, app.name
        ))
    })?;
    let sync = store.state.sync_of(&db_id).cloned().ok_or_else(|| {
        PlatformError::Conflict(format!("sync is not enabled on database {db_id}"))
    })?;
    drop(store);
    let path = app.path.join("sync-rules.yaml");
    let content = std::fs::read_to_string(&path).map_err(PlatformError::io(&path))?;
    crate::pg::install_default_crypto_provider();
    let http = reqwest::Client::new();
    let auth = format!("Bearer {}", sync.api_token);
    let http_err = |what: &str| {
        let what = what.to_owned();
        move |source| PlatformError::Http { what, source }
    };
    let current: serde_json::Value = http
        .get(format!("{}/api/sync-rules/v1/current", sync.url()))
        .header("Authorization", &auth)
        .send()
        .await
        .map_err(http_err(
            "cannot reach the sync service (is it running? `riptide status`)",
        ))?
        .json()
        .await
        .unwrap_or_default();
    for slot in ["current", "next"] {
        let d = &current["data"][slot];
        if d["content"].as_str() == Some(content.as_str()) {
            return Ok(RulesInfo {
                app_id: app.id,
                sync_id: sync.id,
                deployment: serde_json::json!({"id": d["id"], "slot_name": d["slot_name"], "state": d["state"]}),
                already: true,
            });
        }
    }
    let response = http
        .post(format!("{}/api/sync-rules/v1/deploy", sync.url()))
        .header("Authorization", &auth)
        .json(&serde_json::json!({ "content": content }))
        .send()
        .await
        .map_err(http_err(
            "cannot reach the sync service (is it running? `riptide status`)",
        ))?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    if !status.is_success() {
        let message = body["error"]["description"]
            .as_str()
            .or(body["error"]["message"].as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| body.to_string());
        let details = body["error"]["details"].to_string();
        return Err(PlatformError::Rules(format!(
            "the sync service rejected {} ({status}): {message}{}",
            path.display(),
            if details == "null" {
                String::new()
            } else {
                format!(" {details}")
            }
        )));
    }
    Ok(RulesInfo {
        app_id: app.id,
        sync_id: sync.id,
        deployment: body["data"].clone(),
        already: false,
    })
}
