//! The embedded default: `riptide serve` with no config runs on a private Postgres cluster under
//! Riptide's home directory, with a demo schema, demo sync rules and a local signing key.
//!
//! The cluster asks every connection for the `postgres` superuser's SCRAM-SHA-256 password,
//! generated when the cluster is created and kept in `RIPTIDE_HOME/embedded-postgres-password`
//! (mode 0600, beside the demo signing key). A cluster created before Riptide set a password
//! (no such file) trusts local connections and keeps working as it was, with a warning at each
//! start; deleting it (its data too) makes the next start create a password-protected one.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{EncodePrivateKey, KeypairBytes};
use riptide_localpg::{Auth, Durability, LocalCluster, LocalPgError};
use riptide_pg::{PgConnection, SslMode, TlsOptions};

use crate::config::{AuthConfig, ServeConfig};

/// The demo database in the embedded cluster.
pub const DEMO_DATABASE: &str = "riptide_demo";
/// The audience of demo tokens.
pub const DEMO_AUDIENCE: &str = "riptide-demo";
/// The file under Riptide's home that holds the embedded cluster's superuser password.
pub const PASSWORD_FILE: &str = "embedded-postgres-password";

/// The demo schema: lists owned by users, todos in lists, and list sharing.
pub const DEMO_SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS lists (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL,
    owner_id text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS todos (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    list_id uuid NOT NULL REFERENCES lists(id) ON DELETE CASCADE,
    description text NOT NULL,
    completed boolean NOT NULL DEFAULT false,
    created_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS list_members (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    list_id uuid NOT NULL REFERENCES lists(id) ON DELETE CASCADE,
    user_id text NOT NULL,
    UNIQUE (list_id, user_id)
);
DO $$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_publication WHERE pubname = 'powersync') THEN
        CREATE PUBLICATION powersync FOR ALL TABLES;
    END IF;
END $$;
"#;

const DEMO_SEED: &str = r#"
WITH l AS (
    INSERT INTO lists (name, owner_id) VALUES ('Welcome to Riptide', 'demo') RETURNING id
)
INSERT INTO todos (list_id, description, created_by)
SELECT l.id, d, 'demo' FROM l, unnest(ARRAY[
    'Open a sync stream with the demo token',
    'Insert a row in Postgres and watch it arrive',
    'Share a list by inserting into list_members'
]) AS d;
"#;

/// Lists a user owns, and lists shared with them, each with its todos.
pub const DEMO_RULES: &str = r#"bucket_definitions:
  owned_lists:
    parameters: SELECT id AS list_id FROM lists WHERE owner_id = request.user_id()
    data:
      - SELECT * FROM lists WHERE id = bucket.list_id
      - SELECT * FROM todos WHERE list_id = bucket.list_id
  shared_lists:
    parameters: SELECT list_id FROM list_members WHERE user_id = request.user_id()
    data:
      - SELECT * FROM lists WHERE id = bucket.list_id
      - SELECT * FROM todos WHERE list_id = bucket.list_id
"#;

/// Why the embedded environment could not start.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error("cannot create {}", path.display())]
    CreateHome {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Cluster(#[from] LocalPgError),
    #[error(transparent)]
    Key(#[from] DemoKeyError),
    #[error("cannot read or write the embedded Postgres password file {}", path.display())]
    PasswordFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot connect to the embedded Postgres ({url})")]
    Connect {
        url: String,
        #[source]
        source: riptide_pg::PgError,
    },
    #[error("cannot create the demo database")]
    CreateDatabase(#[source] tokio_postgres::Error),
    #[error("cannot create the demo schema")]
    Schema(#[source] tokio_postgres::Error),
    #[error("cannot seed the demo data")]
    Seed(#[source] tokio_postgres::Error),
}

/// Why the demo signing key could not be read, written or used.
#[derive(Debug, thiserror::Error)]
pub enum DemoKeyError {
    #[error("{} is malformed; delete it to make a new key", path.display())]
    Malformed { path: PathBuf },
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the system clock is before 1970")]
    Clock(#[source] std::time::SystemTimeError),
    #[error("cannot encode the signing key")]
    Encode(#[source] ed25519_dalek::pkcs8::Error),
    #[error("cannot sign the token")]
    Sign(#[source] jsonwebtoken::errors::Error),
}

/// The embedded environment: its cluster and the demo signing key.
pub struct Embedded {
    pub home: PathBuf,
    pub cluster: LocalCluster,
    pub port: u16,
    /// The superuser's password (`None`: a cluster from before passwords, which trusts local
    /// connections).
    pub password: Option<String>,
    pub key: DemoKey,
}

impl Embedded {
    /// Initialises (first run) and starts the embedded cluster, creating the demo database.
    pub async fn start(home: &Path) -> Result<Embedded, EmbeddedError> {
        std::fs::create_dir_all(home).map_err(|source| EmbeddedError::CreateHome {
            path: home.to_owned(),
            source,
        })?;
        let cluster = LocalCluster::new(cluster_dir(home));
        let first_run = !cluster.is_initialized();
        if first_run {
            eprintln!(
                "initialising the embedded Postgres in {} …",
                cluster.data_dir().display()
            );
        }
        let password = cluster_password(&cluster, &home.join(PASSWORD_FILE))?;
        let port = cluster.start(None)?;
        let key = DemoKey::load_or_create(&home.join("demo-signing-key"))?;
        prepare_demo_database(port, password.as_deref()).await?;
        Ok(Embedded {
            home: home.to_owned(),
            cluster,
            port,
            password,
            key,
        })
    }

    /// The demo database's URL, with the password: a secret, show it through
    /// `riptide_pg::uri::redact`.
    pub fn demo_url(&self) -> String {
        riptide_localpg::url_with(self.port, DEMO_DATABASE, self.password.as_deref())
    }

    /// A service config for the demo database.
    pub fn serve_config(&self, port: u16) -> ServeConfig {
        ServeConfig {
            // A demo on this machine: not reachable from the network unless `--host` says so.
            host: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            port,
            sync_rules: Some(DEMO_RULES.to_owned()),
            sync_rules_origin: "the built-in demo rules".into(),
            ..ServeConfig::new(
                demo_database(self.port, self.password.as_deref()),
                AuthConfig {
                    jwks: Some(serde_json::json!({ "keys": [self.key.jwk()] })),
                    audience: vec![DEMO_AUDIENCE.into()],
                    ..AuthConfig::default()
                },
            )
        }
    }
}

/// Initialises the cluster on its first run with a new password, written first to
/// `password_file` (0600), and returns the password: the file's for an existing cluster, `None`
/// for one from before passwords (which trusts local connections: warned about).
fn cluster_password(
    cluster: &LocalCluster,
    password_file: &Path,
) -> Result<Option<String>, EmbeddedError> {
    let file_error = |source| EmbeddedError::PasswordFile {
        path: password_file.to_owned(),
        source,
    };
    if !cluster.is_initialized() {
        let password = riptide_localpg::generate_password();
        // Before initdb: a cluster never exists without its password on disk. A file left by
        // an initialisation that failed is replaced.
        match std::fs::remove_file(password_file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(file_error(e)),
        }
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(password_file)
            .and_then(|mut f| writeln!(f, "{password}"))
            .map_err(file_error)?;
        cluster.init(Durability::Durable, &Auth::Scram(password.clone()))?;
        return Ok(Some(password));
    }
    match std::fs::read_to_string(password_file) {
        Ok(text) => Ok(Some(text.trim().to_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!(
                "warning: the embedded Postgres in {} was created by an older Riptide and accepts \
                 every local connection without a password; it keeps working as it is. To get a \
                 password-protected one, delete that directory (its data is lost) and start again.",
                cluster.data_dir().display()
            );
            Ok(None)
        }
        Err(e) => Err(file_error(e)),
    }
}

/// The demo database of the cluster on `port`: what [`Embedded::demo_url`] names, without
/// TLS (the embedded cluster listens on 127.0.0.1 only and has no certificate).
fn demo_database(port: u16, password: Option<&str>) -> PgConnection {
    let mut config = tokio_postgres::Config::new();
    config
        .host("127.0.0.1")
        .port(port)
        .user("postgres")
        .dbname(DEMO_DATABASE);
    if let Some(password) = password {
        config.password(password);
    }
    PgConnection::new(config, TlsOptions::new(SslMode::Disable))
}

/// Where the cluster lives. PostgreSQL runs as the `postgres` user when we are root, so its
/// data directory must be reachable by that user; a home under an unreachable directory (like
/// `/root`) keeps its cluster under `/var/lib/riptide` instead.
fn cluster_dir(home: &Path) -> PathBuf {
    let preferred = home.join("postgres");
    if !riptide_localpg::is_root() || reachable_by_others(home) {
        return preferred;
    }
    let name: String = home
        .display()
        .to_string()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    PathBuf::from("/var/lib/riptide")
        .join(name.trim_matches('_'))
        .join("postgres")
}

fn reachable_by_others(path: &Path) -> bool {
    let Ok(abs) = std::fs::canonicalize(path) else {
        return false;
    };
    abs.ancestors().all(|p| {
        std::fs::metadata(p)
            .map(|m| m.permissions().mode() & 0o001 != 0)
            .unwrap_or(false)
    })
}

async fn prepare_demo_database(port: u16, password: Option<&str>) -> Result<(), EmbeddedError> {
    let admin = connect(&riptide_localpg::url_with(port, "postgres", password)).await?;
    let exists = admin
        .query_opt(
            "SELECT 1 FROM pg_database WHERE datname = $1",
            &[&DEMO_DATABASE],
        )
        .await
        .map_err(EmbeddedError::CreateDatabase)?
        .is_some();
    if !exists {
        admin
            .batch_execute(&format!("CREATE DATABASE {DEMO_DATABASE}"))
            .await
            .map_err(EmbeddedError::CreateDatabase)?;
    }
    let demo = connect(&riptide_localpg::url_with(port, DEMO_DATABASE, password)).await?;
    demo.batch_execute(DEMO_SCHEMA)
        .await
        .map_err(EmbeddedError::Schema)?;
    if !exists {
        demo.batch_execute(DEMO_SEED)
            .await
            .map_err(EmbeddedError::Seed)?;
    }
    Ok(())
}

async fn connect(url: &str) -> Result<tokio_postgres::Client, EmbeddedError> {
    let failed = |source| EmbeddedError::Connect {
        url: riptide_pg::uri::redact(url),
        source,
    };
    let mut connection = PgConnection::from_uri(url).map_err(failed)?;
    connection.set_tls(TlsOptions::new(SslMode::Disable));
    connection.connect().await.map_err(failed)
}

/// The local Ed25519 key that signs demo tokens.
pub struct DemoKey {
    pub kid: String,
    signing: SigningKey,
}

impl DemoKey {
    /// Reads the key file (`kid` line, base64 PKCS#8 line) or creates it with mode 0600.
    pub fn load_or_create(path: &Path) -> Result<DemoKey, DemoKeyError> {
        match std::fs::read_to_string(path) {
            Ok(text) => DemoKey::read(path, &text),
            Err(_) => DemoKey::create(path),
        }
    }

    fn read(path: &Path, text: &str) -> Result<DemoKey, DemoKeyError> {
        let malformed = || DemoKeyError::Malformed {
            path: path.to_owned(),
        };
        let mut lines = text.lines();
        let (Some(kid), Some(secret)) = (lines.next(), lines.next()) else {
            return Err(malformed());
        };
        let bytes: [u8; 32] = STANDARD
            .decode(secret.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(malformed)?;
        Ok(DemoKey {
            kid: kid.trim().to_owned(),
            signing: SigningKey::from_bytes(&bytes),
        })
    }

    fn create(path: &Path) -> Result<DemoKey, DemoKeyError> {
        let key = DemoKey {
            kid: format!("riptide-demo-{:08x}", rand::random::<u32>()),
            signing: SigningKey::from_bytes(&rand::random::<[u8; 32]>()),
        };
        let write = |source| DemoKeyError::Write {
            path: path.to_owned(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(write)?;
        writeln!(
            file,
            "{}\n{}",
            key.kid,
            STANDARD.encode(key.signing.to_bytes())
        )
        .map_err(write)?;
        Ok(key)
    }

    pub fn jwk(&self) -> serde_json::Value {
        serde_json::json!({
            "kty": "OKP",
            "crv": "Ed25519",
            "alg": "EdDSA",
            "kid": self.kid,
            "x": URL_SAFE_NO_PAD.encode(self.signing.verifying_key().as_bytes()),
        })
    }

    /// A token for `user_id`, valid for `ttl_secs`.
    pub fn token(&self, user_id: &str, ttl_secs: u64) -> Result<String, DemoKeyError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(DemoKeyError::Clock)?
            .as_secs();
        let claims = serde_json::json!({
            "sub": user_id,
            "aud": DEMO_AUDIENCE,
            "iat": now,
            "exp": now + ttl_secs,
        });
        let der = KeypairBytes {
            secret_key: self.signing.to_bytes(),
            public_key: None,
        }
        .to_pkcs8_der()
        .map_err(DemoKeyError::Encode)?;
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(
            &header,
            &claims,
            &jsonwebtoken::EncodingKey::from_ed_der(der.as_bytes()),
        )
        .map_err(DemoKeyError::Sign)
    }
}
