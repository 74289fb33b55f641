//! The key store: inline keys, remote JWKS keys, allowed audiences, and the verification rules
//! of docs/protocol.md §6.1.
//!
//! Remote keys are fetched on first use, again once they are older than
//! [`AuthConfig::jwks_refresh_interval`] (so a key the issuer removed is refused within that
//! interval), and when no key fits a token's `kid` (at most once per [`REFRESH_INTERVAL`]). A
//! failed fetch keeps the keys already known. Fetches follow no redirects, read at most
//! [`MAX_JWKS_BYTES`](super::fetch::MAX_JWKS_BYTES) and, when configured, refuse hosts that
//! resolve to local or listed addresses ([`super::fetch`]).

use std::collections::HashSet;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use jsonwebtoken::Validation;
use jsonwebtoken::errors::ErrorKind;
use serde_json::{Map, Value};

use super::fetch::{IpPolicy, JwksClient};
use super::jwks::{JwksError, KeySpec, VerifyKey, fetch_key_set, parse_key_set};
use super::{AuthError, es512};
use crate::metrics::ServiceMetrics;

/// Clock tolerance for `exp`, `nbf`, `iat`.
const LEEWAY_SECS: i64 = 60;
/// Default maximum `exp - iat`.
pub const DEFAULT_MAX_LIFETIME_SECS: u64 = 86_400;
/// Minimum time between two fetches of the remote JWKS for an unknown `kid`.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(30);
/// Default [`AuthConfig::jwks_refresh_interval`].
pub const DEFAULT_JWKS_REFRESH_INTERVAL: Duration = Duration::from_secs(300);
/// The audience Supabase Auth puts in its tokens.
pub const SUPABASE_AUDIENCE: &str = "authenticated";

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
    /// Remote keys older than this are fetched again before a token is verified.
    pub jwks_refresh_interval: Duration,
    /// `block_local_jwks`: refuse JWKS hosts that resolve to loopback, private, link-local or
    /// unique-local addresses.
    pub block_local_jwks: bool,
    /// `jwks_reject_ip_ranges`: CIDRs (or `local`) JWKS hosts may not resolve to.
    pub jwks_reject_ip_ranges: Vec<String>,
    /// `supabase` / `supabase_jwt_secret`.
    pub supabase: SupabaseAuth,
}

/// Supabase Auth tokens, as PowerSync's `client_auth.supabase: true` and
/// `client_auth.supabase_jwt_secret` accept them: keys from the project's JWKS and/or the
/// legacy HS256 secret, both accepting the audience `authenticated`.
#[derive(Debug, Clone, Default)]
pub struct SupabaseAuth {
    /// The project's JWKS, `https://<project>.supabase.co/auth/v1/.well-known/jwks.json`
    /// ([`supabase_jwks_uri`] derives it from the database connection).
    pub jwks_uri: Option<String>,
    /// The legacy JWT secret (HS256), used as its UTF-8 bytes.
    pub jwt_secret: Option<String>,
}

/// The Supabase project of a database host (`db.<project>.supabase.co`) or of a pooler
/// connection (`*.pooler.supabase.com` with user `postgres.<project>`), and its JWKS URI.
pub fn supabase_jwks_uri(host: &str, user: &str) -> Option<String> {
    let host = host.to_ascii_lowercase();
    let project = if let Some(rest) = host.strip_prefix("db.") {
        rest.strip_suffix(".supabase.co")?.to_owned()
    } else if host.ends_with(".pooler.supabase.com") {
        user.strip_prefix("postgres.")?.to_owned()
    } else {
        return None;
    };
    let valid = !project.is_empty() && project.chars().all(|c| c.is_ascii_alphanumeric());
    valid.then(|| format!("https://{project}.supabase.co/auth/v1/.well-known/jwks.json"))
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            jwks: None,
            jwks_uri: Vec::new(),
            audience: Vec::new(),
            max_lifetime_secs: DEFAULT_MAX_LIFETIME_SECS,
            jwks_refresh_interval: DEFAULT_JWKS_REFRESH_INTERVAL,
            block_local_jwks: false,
            jwks_reject_ip_ranges: Vec::new(),
            supabase: SupabaseAuth::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    #[error("invalid inline JWKS")]
    Jwks(#[from] JwksError),
    #[error("could not build the HTTP client for JWKS")]
    HttpClient(#[source] reqwest::Error),
    #[error("{0}")]
    IpRanges(String),
}

/// What a token's header asks for.
enum Alg {
    Jwt(Box<jsonwebtoken::Header>),
    /// ES512, with the header's `kid`.
    Es512(Option<String>),
}

/// A remote JWKS document and the extra audiences its keys accept.
#[derive(Debug, Clone)]
struct Remote {
    uri: String,
    audiences: Vec<String>,
}

/// When the remote keys were fetched.
#[derive(Debug, Default)]
struct Fetched {
    /// Last fetch tried.
    attempt: Option<Instant>,
    /// Last fetch that succeeded.
    success: Option<Instant>,
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
    remote_uris: Vec<Remote>,
    remote_keys: RwLock<Arc<Vec<KeySpec>>>,
    /// When the remote keys were last fetched (or tried); held while fetching so concurrent
    /// verifications fetch once.
    fetched: tokio::sync::Mutex<Fetched>,
    refresh_interval: Duration,
    client: Option<JwksClient>,
    audiences: HashSet<String>,
    max_lifetime_secs: u64,
    metrics: OnceLock<Arc<ServiceMetrics>>,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore")
            .field("static_keys", &self.inner.static_keys.len())
            .field(
                "remote_uris",
                &self
                    .inner
                    .remote_uris
                    .iter()
                    .map(|r| &r.uri)
                    .collect::<Vec<_>>(),
            )
            .field("audiences", &self.inner.audiences)
            .finish_non_exhaustive()
    }
}

impl KeyStore {
    pub fn new(config: AuthConfig) -> Result<KeyStore, KeyStoreError> {
        let mut static_keys = match &config.jwks {
            Some(doc) => parse_key_set(doc, true)?,
            None => Vec::new(),
        };
        let supabase_aud = || vec![SUPABASE_AUDIENCE.to_owned()];
        if let Some(secret) = &config.supabase.jwt_secret {
            let jwk = serde_json::json!({
                "kty": "oct",
                "alg": "HS256",
                "k": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret.as_bytes()),
            });
            let key = KeySpec::from_jwk_value(&jwk)
                .map_err(|reason| JwksError::InvalidKey { index: 0, reason })?;
            static_keys.push(key.with_audiences(supabase_aud()));
        }
        let mut remote_uris: Vec<Remote> = config
            .jwks_uri
            .into_iter()
            .map(|uri| Remote {
                uri,
                audiences: Vec::new(),
            })
            .collect();
        if let Some(uri) = config.supabase.jwks_uri {
            remote_uris.push(Remote {
                uri,
                audiences: supabase_aud(),
            });
        }
        let client = if remote_uris.is_empty() {
            None
        } else {
            let policy = IpPolicy::new(config.block_local_jwks, &config.jwks_reject_ip_ranges)
                .map_err(KeyStoreError::IpRanges)?;
            Some(JwksClient::new(policy).map_err(KeyStoreError::HttpClient)?)
        };
        Ok(KeyStore {
            inner: Arc::new(Inner {
                static_keys,
                remote_uris,
                remote_keys: RwLock::new(Arc::new(Vec::new())),
                fetched: tokio::sync::Mutex::new(Fetched::default()),
                refresh_interval: config.jwks_refresh_interval,
                client,
                audiences: config.audience.into_iter().collect(),
                max_lifetime_secs: config.max_lifetime_secs,
                metrics: OnceLock::new(),
            }),
        })
    }

    /// Counts JWKS fetches in `metrics` (once; done by [`crate::AppState::new`]).
    pub fn attach_metrics(&self, metrics: Arc<ServiceMetrics>) {
        let _ = self.inner.metrics.set(metrics);
    }

    /// A key store with the given keys and audiences and no remote JWKS.
    pub fn from_keys(keys: Vec<KeySpec>, audience: Vec<String>) -> KeyStore {
        KeyStore {
            inner: Arc::new(Inner {
                static_keys: keys,
                remote_uris: Vec::new(),
                remote_keys: RwLock::new(Arc::new(Vec::new())),
                fetched: tokio::sync::Mutex::new(Fetched::default()),
                refresh_interval: DEFAULT_JWKS_REFRESH_INTERVAL,
                client: None,
                audiences: audience.into_iter().collect(),
                max_lifetime_secs: DEFAULT_MAX_LIFETIME_SECS,
                metrics: OnceLock::new(),
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
        let header = match jsonwebtoken::decode_header(token) {
            Ok(h) => Alg::Jwt(Box::new(h)),
            // `jsonwebtoken` knows no ES512.
            Err(e) => match es512::es512_header(token) {
                Some(kid) => Alg::Es512(kid),
                None => return Err(AuthError::Malformed(describe_jwt_error(&e))),
            },
        };
        let remote = !self.inner.remote_uris.is_empty();
        if remote {
            self.refresh_if_stale().await;
        }
        let verify = |header: &Alg| match header {
            Alg::Jwt(h) => self.verify_with_keys(token, h, now),
            Alg::Es512(kid) => self.verify_es512(token, kid.as_deref(), now),
        };
        let mut result = verify(&header);
        if matches!(result, Err(AuthError::NoKey)) && remote && self.refresh_if_due().await {
            result = verify(&header);
        }
        result
    }

    /// Fetches the remote JWKS when the keys are older than the refresh interval (or were
    /// never fetched), at most once per [`REFRESH_INTERVAL`] (or the refresh interval, when
    /// shorter) while fetches fail. With keys already fetched, the fetch runs in the background
    /// and this token is judged with the keys in hand, so a slow issuer never stalls
    /// verification; before the first fetch, the token waits for it.
    async fn refresh_if_stale(&self) {
        let due = match self.inner.fetched.try_lock() {
            // A fetch is under way: use the keys in hand.
            Err(_) => return,
            Ok(fetched) => self.stale(&fetched).then_some(fetched.success.is_some()),
        };
        match due {
            None => {}
            Some(true) => {
                let store = self.clone();
                tokio::spawn(async move { store.refresh_stale_now().await });
            }
            Some(false) => self.refresh_stale_now().await,
        }
    }

    /// Whether the keys are due for a fetch (see [`Self::refresh_if_stale`]).
    fn stale(&self, fetched: &Fetched) -> bool {
        let interval = self.inner.refresh_interval;
        let fresh = fetched.success.is_some_and(|t| t.elapsed() < interval);
        let retry_gap = REFRESH_INTERVAL.min(interval);
        let tried = fetched.attempt.is_some_and(|t| t.elapsed() < retry_gap);
        !(fresh || tried)
    }

    async fn refresh_stale_now(&self) {
        let mut fetched = self.inner.fetched.lock().await;
        if self.stale(&fetched) {
            self.fetch_locked(&mut fetched).await;
        }
    }

    /// Fetches the remote JWKS unless it was fetched within [`REFRESH_INTERVAL`] (or the
    /// refresh interval, when shorter). Returns whether a fetch succeeded.
    async fn refresh_if_due(&self) -> bool {
        let gap = REFRESH_INTERVAL.min(self.inner.refresh_interval);
        let mut fetched = self.inner.fetched.lock().await;
        if fetched.attempt.is_some_and(|t| t.elapsed() < gap) {
            return false;
        }
        self.fetch_locked(&mut fetched).await
    }

    /// Fetches with the fetch lock held; keeps the old keys on failure.
    async fn fetch_locked(&self, fetched: &mut Fetched) -> bool {
        fetched.attempt = Some(Instant::now());
        let result = self.fetch_remote().await;
        if let Some(m) = self.inner.metrics.get() {
            m.jwks_refreshed(result.is_ok());
        }
        match result {
            Ok(keys) => {
                *self
                    .inner
                    .remote_keys
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(keys);
                fetched.success = Some(Instant::now());
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
        let mut fetched = self.inner.fetched.lock().await;
        fetched.attempt = Some(Instant::now());
        let keys = self.fetch_remote().await?;
        *self
            .inner
            .remote_keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(keys);
        fetched.success = Some(Instant::now());
        Ok(())
    }

    async fn fetch_remote(&self) -> Result<Vec<KeySpec>, JwksError> {
        let Some(client) = &self.inner.client else {
            return Ok(Vec::new());
        };
        let mut keys = Vec::new();
        for remote in &self.inner.remote_uris {
            let set = fetch_key_set(client, &remote.uri).await?;
            keys.extend(
                set.into_iter()
                    .map(|k| k.with_audiences(remote.audiences.clone())),
            );
        }
        Ok(keys)
    }

    /// An ES512 token: the key with its `kid` (which must be a P-521 key), else every P-521
    /// key without a kid.
    fn verify_es512(
        &self,
        token: &str,
        kid: Option<&str>,
        now: SystemTime,
    ) -> Result<VerifiedToken, AuthError> {
        let remote = self
            .inner
            .remote_keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let all = || self.inner.static_keys.iter().chain(remote.iter());
        let p521 = |k: &KeySpec| match &k.key {
            VerifyKey::Es512(v) => Some(v.clone()),
            VerifyKey::Jwt(_) => None,
        };
        let mut candidates: Vec<(&KeySpec, p521::ecdsa::VerifyingKey)> = Vec::new();
        if let Some(kid) = kid
            && let Some(key) = all().find(|k| k.kid.as_deref() == Some(kid))
        {
            let v = p521(key).ok_or_else(|| AuthError::UnexpectedAlgorithm("ES512".into()))?;
            candidates.push((key, v));
        }
        if candidates.is_empty() {
            candidates.extend(
                all()
                    .filter(|k| k.kid.is_none())
                    .filter_map(|k| p521(k).map(|v| (k, v))),
            );
        }
        if candidates.is_empty() {
            return Err(AuthError::NoKey);
        }
        for (key, v) in candidates {
            match es512::verify(token, &v) {
                Ok(claims) => return self.check_claims(claims, &key.audiences, now),
                Err(AuthError::BadSignature) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(AuthError::BadSignature)
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
            let VerifyKey::Jwt(decoding) = &key.key else {
                continue;
            };
            match jsonwebtoken::decode::<Map<String, Value>>(token, decoding, &validation) {
                Ok(data) => {
                    claims = Some((data.claims, key));
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
        let (claims, key) = claims.ok_or(AuthError::BadSignature)?;
        self.check_claims(claims, &key.audiences, now)
    }

    /// The claim rules of docs/protocol.md §6.1, plus: `sub` not empty, `iat` not in the
    /// future (beyond the leeway), `exp` not before `iat`.
    fn check_claims(
        &self,
        claims: Map<String, Value>,
        key_audiences: &[String],
        now: SystemTime,
    ) -> Result<VerifiedToken, AuthError> {
        let now = unix_secs(now);
        let user_id = match claims.get("sub") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(AuthError::MissingClaim("sub")),
        };
        if user_id.is_empty() {
            return Err(AuthError::InvalidClaim("sub"));
        }
        let iat = numeric_claim(&claims, "iat")?;
        let exp = numeric_claim(&claims, "exp")?;
        if exp.saturating_add(LEEWAY_SECS) < now {
            return Err(AuthError::Expired);
        }
        if iat > now.saturating_add(LEEWAY_SECS) {
            return Err(AuthError::InvalidClaim("iat"));
        }
        // A token that expires before it was issued. (One already past `exp` is judged by
        // its expiry instead: within the leeway it is served like any token about to expire.)
        if exp < iat && exp >= now {
            return Err(AuthError::InvalidClaim("exp"));
        }
        let allowed =
            |a: &str| self.inner.audiences.contains(a) || key_audiences.iter().any(|k| k == a);
        if let Some(nbf) = claims.get("nbf") {
            let nbf = nbf.as_f64().ok_or(AuthError::InvalidClaim("nbf"))?;
            if nbf > (now.saturating_add(LEEWAY_SECS)) as f64 {
                return Err(AuthError::InvalidClaim("nbf"));
            }
        }
        match claims.get("aud") {
            None | Some(Value::Null) => return Err(AuthError::MissingAudience),
            Some(Value::String(a)) => {
                if !allowed(a) {
                    return Err(AuthError::BadAudience);
                }
            }
            Some(Value::Array(list)) => {
                let ok = list.iter().filter_map(Value::as_str).any(allowed);
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
