//! `client_auth`: the keys client tokens are verified with, as the service's [`AuthConfig`].

use serde::Deserialize;

use super::{Ignored, Resolver, Str};
use crate::config::{AuthConfig, ConfigError, Env};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ClientAuth {
    jwks: Option<Jwks>,
    jwks_uri: Option<OneOrMany>,
    audience: Option<Vec<Str>>,
    supabase: Option<Ignored>,
    supabase_jwt_secret: Option<Ignored>,
    block_local_jwks: Option<Ignored>,
    jwks_reject_ip_ranges: Option<Ignored>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Jwks {
    keys: Vec<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(Str),
    Many(Vec<Str>),
}

/// At least one key source is required: without one no client could authenticate.
pub(super) fn resolve(
    r: &mut Resolver<'_>,
    client_auth: Option<ClientAuth>,
) -> Result<AuthConfig, ConfigError> {
    let mut auth = AuthConfig::default();
    let mut inline_keys = 0;
    if let Some(ca) = client_auth {
        r.ignore("client_auth.supabase", &ca.supabase);
        r.ignore("client_auth.supabase_jwt_secret", &ca.supabase_jwt_secret);
        r.ignore("client_auth.block_local_jwks", &ca.block_local_jwks);
        r.ignore(
            "client_auth.jwks_reject_ip_ranges",
            &ca.jwks_reject_ip_ranges,
        );
        if let Some(jwks) = ca.jwks {
            inline_keys = jwks.keys.len();
            auth.jwks = Some(serde_json::json!({ "keys": jwks.keys }));
        }
        auth.jwks_uri = match ca.jwks_uri {
            None => Vec::new(),
            Some(OneOrMany::One(u)) => vec![u.0],
            Some(OneOrMany::Many(us)) => us.into_iter().map(Env::into_inner).collect(),
        };
        auth.audience = ca
            .audience
            .unwrap_or_default()
            .into_iter()
            .map(Env::into_inner)
            .collect();
    }
    if inline_keys == 0 && auth.jwks_uri.is_empty() {
        return Err(r.invalid(
            "client_auth: no keys configured (give `jwks: {keys: [...]}` or `jwks_uri`); \
             no client could authenticate",
        ));
    }
    Ok(auth)
}
