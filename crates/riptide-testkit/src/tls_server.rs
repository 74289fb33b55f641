//! A TLS-only PostgreSQL server for TLS tests, started once per test process like the plain one.
//!
//! Certificates are generated here (rcgen): a CA, a server certificate for `localhost` and
//! `127.0.0.1`, and a client certificate for the [`CERT_USER`] role. `pg_hba.conf` accepts only
//! TLS over TCP: `hostssl … cert` for [`CERT_USER`], `hostssl … scram-sha-256` for everyone else
//! (also replication), and `hostnossl … reject`; the setup itself goes over the Unix socket.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use riptide_localpg::{Auth, Durability, LocalCluster};

use crate::cluster::{Cluster, spawn_watchdog};

/// A superuser with REPLICATION that logs in with a SCRAM password (over TLS only).
pub const TLS_USER: &str = "riptide_tls";
/// A REPLICATION role that logs in with the client certificate (`cert` authentication).
pub const CERT_USER: &str = "riptide_cert";
/// The issuer name of every certificate here.
pub const CA_NAME: &str = "Riptide Test CA";

/// The TLS server and the material to reach it.
#[derive(Debug)]
pub struct TlsServer {
    /// [`TLS_USER`] on `localhost` with `sslmode=verify-full` and the CA file: what
    /// [`crate::TestDatabase::create_on`] and its URLs use.
    pub cluster: Cluster,
    pub password: String,
    dir: PathBuf,
    pub ca_pem: String,
    pub client_cert_pem: String,
    pub client_key_pem: String,
}

impl TlsServer {
    /// The CA certificate's file.
    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.crt")
    }

    /// The client certificate's file (for [`CERT_USER`]).
    pub fn client_cert_path(&self) -> PathBuf {
        self.dir.join("client.crt")
    }

    /// Its private key's file.
    pub fn client_key_path(&self) -> PathBuf {
        self.dir.join("client.key")
    }

    /// `postgres://riptide_tls:…@host:port/dbname?params`, on `host` (`localhost`,
    /// `127.0.0.1`, or a name the certificate does not list with `hostaddr=127.0.0.1`).
    pub fn url(&self, host: &str, dbname: &str, params: &str) -> String {
        Cluster {
            host: host.to_owned(),
            ..self.cluster.clone()
        }
        .url_with(dbname, params)
    }

    /// `postgres://riptide_cert@localhost:port/dbname?params` (no password: the certificate).
    pub fn cert_user_url(&self, dbname: &str, params: &str) -> String {
        Cluster {
            user: CERT_USER.to_owned(),
            password: None,
            ..self.cluster.clone()
        }
        .url_with(dbname, params)
    }
}

/// Set by the test script to the directory of a TLS server started once for the whole run
/// (`riptide-test-postgres start-tls DIR`); without it each test process starts its own.
pub const TLS_DIR_ENV: &str = "RIPTIDE_TEST_TLS_PG_DIR";

/// The TLS server of this test run: the one in [`TLS_DIR_ENV`] when set, otherwise one this
/// process starts on first use and a watchdog stops and removes after it exits.
pub fn tls_server() -> &'static TlsServer {
    static SERVER: OnceLock<TlsServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        let server = match std::env::var(TLS_DIR_ENV).ok().filter(|d| !d.is_empty()) {
            Some(dir) => TlsServer::open(Path::new(&dir)),
            None => {
                let dir = std::env::temp_dir().join(format!(
                    "riptide-test-tls-{}-{}",
                    std::process::id(),
                    rand::random::<u32>()
                ));
                TlsServer::start(&dir).inspect(|_| {
                    spawn_watchdog(&LocalCluster::new(dir.join("pg")), &dir);
                })
            }
        };
        server.unwrap_or_else(|e| panic!("cannot start the TLS test Postgres server: {e}"))
    })
}

/// What [`TlsServer::open`] needs besides the certificate files.
#[derive(serde::Serialize, serde::Deserialize)]
struct ServerFile {
    port: u16,
    password: String,
}

impl TlsServer {
    /// Generates certificates, then creates and starts a TLS-only cluster in `dir/pg`; the
    /// certificates the tests use and `server.json` go to `dir`. Stop it with
    /// `LocalCluster::new(dir/pg).stop(..)`.
    pub fn start(dir: &Path) -> Result<TlsServer, Box<dyn std::error::Error>> {
        let data = dir.join("pg");
        let local = LocalCluster::new(&data);
        local.init(Durability::Ephemeral, &Auth::Trust)?;
        let certs = Certificates::generate()?;
        certs.install(&data)?;
        // Only the files the tests pass by path; Postgres reads its own from `pg`.
        std::fs::write(dir.join("ca.crt"), &certs.ca)?;
        std::fs::write(dir.join("client.crt"), &certs.client)?;
        write_private(&dir.join("client.key"), &certs.client_key)?;
        let port = local.start(None)?;
        let password = format!("pw-{:08x}", rand::random::<u32>());
        create_roles(&data, port, &password)?;
        let file = ServerFile { port, password };
        write_private(&dir.join("server.json"), &serde_json::to_string(&file)?)?;
        Self::open(dir)
    }

    /// The server [`TlsServer::start`] started in `dir` (still running).
    pub fn open(dir: &Path) -> Result<TlsServer, Box<dyn std::error::Error>> {
        let file: ServerFile = serde_json::from_slice(&std::fs::read(dir.join("server.json"))?)?;
        let ca_path = dir.join("ca.crt");
        Ok(TlsServer {
            cluster: Cluster {
                host: "localhost".into(),
                port: file.port,
                user: TLS_USER.into(),
                password: Some(file.password.clone()),
                params: format!(
                    "sslmode=verify-full&sslrootcert={}",
                    percent_encoding::utf8_percent_encode(
                        &ca_path.display().to_string(),
                        percent_encoding::NON_ALPHANUMERIC
                    )
                ),
            },
            password: file.password,
            dir: dir.to_owned(),
            ca_pem: std::fs::read_to_string(&ca_path)?,
            client_cert_pem: std::fs::read_to_string(dir.join("client.crt"))?,
            client_key_pem: std::fs::read_to_string(dir.join("client.key"))?,
        })
    }
}

struct Certificates {
    ca: String,
    server: String,
    server_key: String,
    client: String,
    client_key: String,
}

impl Certificates {
    fn generate() -> Result<Certificates, rcgen::Error> {
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, CA_NAME);
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let server_key = KeyPair::generate()?;
        let mut server_params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
        server_params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let server = server_params.signed_by(&server_key, &issuer)?;

        let client_key = KeyPair::generate()?;
        let mut client_params = CertificateParams::new(Vec::<String>::new())?;
        // `cert` authentication maps the certificate's CN to the role name.
        client_params
            .distinguished_name
            .push(DnType::CommonName, CERT_USER);
        let client = client_params.signed_by(&client_key, &issuer)?;

        Ok(Certificates {
            ca: ca.pem(),
            server: server.pem(),
            server_key: server_key.serialize_pem(),
            client: client.pem(),
            client_key: client_key.serialize_pem(),
        })
    }

    /// Server files, `ssl = on` and a TLS-only `pg_hba.conf` in the data directory (owned by
    /// the `postgres` user when we are root, as Postgres requires of its key).
    fn install(&self, data: &Path) -> std::io::Result<()> {
        std::fs::write(data.join("server.crt"), &self.server)?;
        write_private(&data.join("server.key"), &self.server_key)?;
        std::fs::write(data.join("root.crt"), &self.ca)?;
        let mut conf = std::fs::OpenOptions::new()
            .append(true)
            .open(data.join("postgresql.conf"))?;
        use std::io::Write;
        conf.write_all(
            b"\n# TLS test server\nssl = on\nssl_cert_file = 'server.crt'\n\
              ssl_key_file = 'server.key'\nssl_ca_file = 'root.crt'\n\
              password_encryption = 'scram-sha-256'\n",
        )?;
        std::fs::write(
            data.join("pg_hba.conf"),
            format!(
                "# TLS test server: TLS only over TCP\n\
                 local     all         all                          trust\n\
                 hostssl   all         {CERT_USER}  127.0.0.1/32    cert\n\
                 hostssl   replication {CERT_USER}  127.0.0.1/32    cert\n\
                 hostssl   all         all           127.0.0.1/32    scram-sha-256\n\
                 hostssl   replication all           127.0.0.1/32    scram-sha-256\n\
                 hostnossl all         all           0.0.0.0/0       reject\n\
                 hostnossl replication all           0.0.0.0/0       reject\n"
            ),
        )?;
        if riptide_localpg::is_root() {
            let status = std::process::Command::new("chown")
                .arg("postgres:postgres")
                .args(["server.crt", "server.key", "root.crt", "pg_hba.conf"].map(|f| data.join(f)))
                .status()?;
            if !status.success() {
                return Err(std::io::Error::other(
                    "chown of the server's TLS files failed",
                ));
            }
        }
        Ok(())
    }
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?
        .write_all(text.as_bytes())
}

/// The roles, created over the Unix socket (the only way in without TLS).
fn create_roles(data: &Path, port: u16, password: &str) -> Result<(), Box<dyn std::error::Error>> {
    let mut config = tokio_postgres::Config::new();
    config
        .host_path(data)
        .port(port)
        .user("postgres")
        .dbname("postgres");
    let sql = format!(
        "CREATE ROLE {TLS_USER} LOGIN SUPERUSER REPLICATION PASSWORD {};\
         CREATE ROLE {CERT_USER} LOGIN REPLICATION",
        riptide_pg::quote_literal(password)
    );
    // On its own thread with its own runtime: this may run inside a test's runtime.
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                runtime.block_on(async {
                    let client = riptide_pg::PgConnection::from(config).connect().await?;
                    client.batch_execute(&sql).await?;
                    Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
                })
            })
            .join()
            .map_err(|_| "role setup panicked")?
            .map_err(|e| e.to_string())
    })?;
    Ok(())
}
