//! The key store: inline keys, remote JWKS keys (cached, refreshed when no key fits, at most
//! once per [`REFRESH_INTERVAL`]), allowed audiences, and the verification rules of
//! docs/protocol.md §6.1.

use std::collections::HashSet;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::Validation;
use jsonwebtoken::errors::ErrorKind;
use serde_json::{Map, Value};

use super::AuthError;
use super::jwks::{JwksError, KeySpec, fetch_key_set, parse_key_set};

/// Clock tolerance for `exp`, `nbf`.
const LEEWAY_SECS: i64 = 60;
/// Default maximum `exp - iat`.
pub const DEFAULT_MAX_LIFETIME_SECS: u64 = 86_400;
/// Minimum time between two fetches of the remote JWKS.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(30);

/// How clients authenticate (`client_auth` in the official configuration).
#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Inline JWKS document `{"keys":[…]}`.
    pub jwks: Option<Value>,
    /// Remote JWKS documents.
    pub jwks_uri: Vec<String>,
    /// Allowed `aud` values; with none, every token fails with `PSYNC_S2105`.
    pub audience: Vec<String>,
    /// Maximum `exp - iat` in seconds.
    pub max_lifetime_secs: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            jwks: None,
            jwks_uri: Vec::new(),
            audience: Vec::new(),
            max_lifetime_secs: DEFAULT_MAX_LIFETIME_SECS,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    #[error("invalid inline JWKS")]
    Jwks(#[from] JwksError),
    #[error("could not build the HTTP client for JWKS")]
    HttpClient(#[source] reqwest::Error),
}

/// A token that verified: its user and claims.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedToken {
    /// `sub` as a string (numbers in decimal), as write checkpoints use it.
    pub user_id: String,
    /// The whole payload (`request.jwt()`).
    pub claims: Map<String, Value>,
    pub issued_at: i64,
    /// `exp`, seconds since the Unix epoch.
    pub expires_at: i64,
}

impl VerifiedToken {
    /// Seconds until `exp` at `now` (negative once expired).
    pub fn expires_in(&self, now: SystemTime) -> i64 {
        self.expires_at.saturating_sub(unix_secs(now))
    }
}

/// Verifies client JWTs. Cheap to clone.
#[derive(Clone)]
pub struct KeyStore {
    inner: Arc<Inner>,
}

struct Inner {
    static_keys: Vec<KeySpec>,
    remote_uris: Vec<String>,
    remote_keys: RwLock<Arc<Vec<KeySpec>>>,
    /// When the remote keys were last fetched (or tried); held while fetching so concurrent
    /// misses fetch once.
    last_refresh: tokio::sync::Mutex<Option<Instant>>,
    client: Option<reqwest::Client>,
    audiences: HashSet<String>,
    max_lifetime_secs: u64,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore")
            .field("static_keys", &self.inner.static_keys.len())
            .field("remote_uris", &self.inner.remote_uris)
            .field("audiences", &self.inner.audiences)
            .finish_non_exhaustive()
    }
}

impl KeyStore {
    pub fn new(config: AuthConfig) -> Result<KeyStore, KeyStoreError> {
        let static_keys = match &config.jwks {
            Some(doc) => parse_key_set(doc, true)?,
            None => Vec::new(),
        };
        let client = if config.jwks_uri.is_empty() {
            None
        } else {
            Some(
                reqwest::Client::builder()
                    .build()
                    .map_err(KeyStoreError::HttpClient)?,
            )
        };
        Ok(KeyStore {
            inner: Arc::new(Inner {
                static_keys,
                remote_uris: config.jwks_uri,
                remote_keys: RwLock::new(Arc::new(Vec::new())),
                last_refresh: tokio::sync::Mutex::new(None),
                client,
                audiences: config.audience.into_iter().collect(),
                max_lifetime_secs: config.max_lifetime_secs,
            }),
        })
    }

    /// A key store with the given keys and audiences and no remote JWKS.
    pub fn from_keys(keys: Vec<KeySpec>, audience: Vec<String>) -> KeyStore {
        KeyStore {
            inner: Arc::new(Inner {
                static_keys: keys,
                remote_uris: Vec::new(),
                remote_keys: RwLock::new(Arc::new(Vec::new())),
                last_refresh: tokio::sync::Mutex::new(None),
                client: None,
                audiences: audience.into_iter().collect(),
                max_lifetime_secs: DEFAULT_MAX_LIFETIME_SECS,
            }),
        }
    }

    /// Verifies a token per docs/protocol.md §6.1.
    pub async fn verify(&self, token: &str) -> Result<VerifiedToken, AuthError> {
        self.verify_at(token, SystemTime::now()).await
    }

    pub(crate) async fn verify_at(
        &self,
        token: &str,
        now: SystemTime,
    ) -> Result<VerifiedToken, AuthError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| AuthError::Malformed(describe_jwt_error(&e)))?;
        let mut result = self.verify_with_keys(token, &header, now);
        if matches!(result, Err(AuthError::NoKey))
            && !self.inner.remote_uris.is_empty()
            && self.refresh_if_due().await
        {
            result = self.verify_with_keys(token, &header, now);
        }
        result
    }

    /// Fetches the remote JWKS unless it was fetched within [`REFRESH_INTERVAL`]. Returns
    /// whether a fetch succeeded.
    async fn refresh_if_due(&self) -> bool {
        let mut last = self.inner.last_refresh.lock().await;
        if last.is_some_and(|t| t.elapsed() < REFRESH_INTERVAL) {
            return false;
        }
        *last = Some(Instant::now());
        match self.fetch_remote().await {
            Ok(keys) => {
                let mut guard = self
                    .inner
                    .remote_keys
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                *guard = Arc::new(keys);
                true
            }
            Err(e) => {
                tracing::warn!(error = %crate::error::error_chain(&e), "could not refresh JWKS");
                false
            }
        }
    }

    /// Fetches every remote JWKS now, ignoring the rate limit.
    pub async fn refresh(&self) -> Result<(), JwksError> {
        let mut last = self.inner.last_refresh.lock().await;
        *last = Some(Instant::now());
        let keys = self.fetch_remote().await?;
        *self
            .inner
            .remote_keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(keys);
        Ok(())
    }

    async fn fetch_remote(&self) -> Result<Vec<KeySpec>, JwksError> {
        let Some(client) = &self.inner.client else {
            return Ok(Vec::new());
        };
        let mut keys = Vec::new();
        for uri in &self.inner.remote_uris {
            keys.extend(fetch_key_set(client, uri).await?);
        }
        Ok(keys)
    }

    fn verify_with_keys(
        &self,
        token: &str,
        header: &jsonwebtoken::Header,
        now: SystemTime,
    ) -> Result<VerifiedToken, AuthError> {
        let remote = self
            .inner
            .remote_keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let all = || self.inner.static_keys.iter().chain(remote.iter());
        let alg = header.alg;

        let mut candidates: Vec<&KeySpec> = Vec::new();
        if let Some(kid) = &header.kid
            && let Some(key) = all().find(|k| k.kid.as_deref() == Some(kid.as_str()))
        {
            if !key.algorithms.contains(&alg) {
                return Err(AuthError::UnexpectedAlgorithm(format!("{alg:?}")));
            }
            candidates.push(key);
        }
        if candidates.is_empty() {
            candidates.extend(all().filter(|k| k.kid.is_none() && k.algorithms.contains(&alg)));
        }
        if candidates.is_empty() {
            return Err(AuthError::NoKey);
        }

        let mut validation = Validation::new(alg);
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();

        let mut claims = None;
        for key in candidates {
            match jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation) {
                Ok(data) => {
                    claims = Some(data.claims);
                    break;
                }
                Err(e) if matches!(e.kind(), ErrorKind::InvalidSignature) => continue,
                Err(e) => match e.kind() {
                    // A key that cannot verify this algorithm (e.g. malformed key material).
                    ErrorKind::InvalidAlgorithm
                    | ErrorKind::InvalidEcdsaKey
                    | ErrorKind::InvalidEddsaKey
                    | ErrorKind::InvalidRsaKey(_)
                    | ErrorKind::InvalidKeyFormat => continue,
                    _ => return Err(AuthError::Malformed(describe_jwt_error(&e))),
                },
            }
        }
        let claims = claims.ok_or(AuthError::BadSignature)?;
        self.check_claims(claims, now)
    }

    fn check_claims(
        &self,
        claims: Map<String, Value>,
        now: SystemTime,
    ) -> Result<VerifiedToken, AuthError> {
        let now = unix_secs(now);
        let user_id = match claims.get("sub") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(AuthError::MissingClaim("sub")),
        };
        let iat = numeric_claim(&claims, "iat")?;
        let exp = numeric_claim(&claims, "exp")?;
        if exp.saturating_add(LEEWAY_SECS) < now {
            return Err(AuthError::Expired);
        }
        if let Some(nbf) = claims.get("nbf") {
            let nbf = nbf.as_f64().ok_or(AuthError::InvalidClaim("nbf"))?;
            if nbf > (now.saturating_add(LEEWAY_SECS)) as f64 {
                return Err(AuthError::InvalidClaim("nbf"));
            }
        }
        match claims.get("aud") {
            None | Some(Value::Null) => return Err(AuthError::MissingAudience),
            Some(Value::String(a)) => {
                if !self.inner.audiences.contains(a) {
                    return Err(AuthError::BadAudience);
                }
            }
            Some(Value::Array(list)) => {
                let ok = list
                    .iter()
                    .filter_map(Value::as_str)
                    .any(|a| self.inner.audiences.contains(a));
                if !ok {
                    return Err(AuthError::BadAudience);
                }
            }
            Some(_) => return Err(AuthError::BadAudience),
        }
        let lifetime = exp.saturating_sub(iat);
        if lifetime > 0 && lifetime as u64 > self.inner.max_lifetime_secs {
            return Err(AuthError::LifetimeTooLong {
                max: self.inner.max_lifetime_secs,
                got: lifetime as u64,
            });
        }
        match claims.get("parameters") {
            None | Some(Value::Object(_)) => {}
            Some(_) => return Err(AuthError::InvalidClaim("parameters")),
        }
        Ok(VerifiedToken {
            user_id,
            claims,
            issued_at: iat,
            expires_at: exp,
        })
    }
}

fn numeric_claim(claims: &Map<String, Value>, name: &'static str) -> Result<i64, AuthError> {
    let v = claims.get(name).ok_or(AuthError::MissingClaim(name))?;
    if let Some(i) = v.as_i64() {
        return Ok(i);
    }
    match v.as_f64() {
        Some(f) if f.is_finite() && f.abs() < 1e15 => Ok(f.floor() as i64),
        _ => Err(AuthError::MissingClaim(name)),
    }
}

pub(crate) fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}

/// A short reason without token contents.
fn describe_jwt_error(e: &jsonwebtoken::errors::Error) -> String {
    match e.kind() {
        ErrorKind::InvalidToken => "not a JWT".to_owned(),
        ErrorKind::InvalidAlgorithmName | ErrorKind::UnsupportedAlgorithm => {
            "unsupported algorithm".to_owned()
        }
        ErrorKind::Base64(_) => "invalid base64".to_owned(),
        ErrorKind::Json(_) => "invalid JSON".to_owned(),
        ErrorKind::Utf8(_) => "invalid UTF-8".to_owned(),
        _ => "invalid token".to_owned(),
    }
}
