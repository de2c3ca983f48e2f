//! Helpers every integration test uses, so each one isolates itself the same way:
//!
//! - [`shared_nats_url`]: the machine's NATS (JetStream) server, checked, with a failing
//!   message that says how to start it (tests never skip).
//! - [`Isolation`]: a random subject prefix and stream name; the stream is deleted when
//!   the value drops.
//! - [`NatsServer`]: a private `nats-server -js` on a free port with its own store, for
//!   tests that kill and restart the broker, or that need TLS ([`NatsServer::start_tls`]).
//!   Killed on drop.
//! - [`cluster::NatsCluster`]: three private `nats-server` processes routed into one
//!   JetStream cluster, for tests that kill a stream leader.
//! - [`PgDatabase`]: a fresh Postgres database, dropped on drop; with a tablespace of
//!   its own on a [`tmpfs::Tmpfs`] to fill ([`PgDatabase::create_in`]).
//! - [`tmpfs::Tmpfs`]: a tiny tmpfs to fill, or to turn read-only (root only).
//! - [`dependencies`]: a package's normal dependency tree, for layering tests.
//! - [`logs`]: log lines captured for assertions.
//! - [`http_edges`]: hostile HTTP clients on raw TCP (headers or a body never
//!   finished, idle keep-alive, connections over the bound), run against both services.

pub mod cluster;
pub mod dependencies;
pub mod http_edges;
pub mod logs;
pub mod tmpfs;

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rand::Rng;

/// Default URL of the shared NATS server, overridable with `TEST_NATS_URL`.
pub const DEFAULT_TEST_NATS_URL: &str = "nats://127.0.0.1:4222";
/// Default admin URL of Postgres, overridable with `TEST_POSTGRES_URL`.
pub const DEFAULT_TEST_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A short random lowercase token, for names.
pub fn random_token() -> String {
    let mut rng = rand::rng();
    (0..10)
        .map(|_| char::from(b'a' + rng.random_range(0..26u8)))
        .collect()
}

fn host_port(url: &str) -> String {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let rest = rest.rsplit('@').next().unwrap_or(rest);
    rest.split('/').next().unwrap_or(rest).to_owned()
}

/// The shared NATS server's URL, after checking it answers. Panics (fails the test)
/// with the command that starts it when it does not.
pub fn shared_nats_url() -> String {
    let url = std::env::var("TEST_NATS_URL").unwrap_or_else(|_| DEFAULT_TEST_NATS_URL.to_owned());
    let addr = host_port(&url);
    if TcpStream::connect(&addr).is_err() {
        panic!(
            "NATS is not reachable at {url}. Start it with JetStream: \
             `nats-server -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server &` \
             (or run `bash scripts/services.sh`), or point TEST_NATS_URL at one."
        );
    }
    url
}

/// A random subject prefix and stream name for one test. Deletes the stream on drop.
#[derive(Debug)]
pub struct Isolation {
    /// NATS URL the stream lives on.
    pub nats_url: String,
    /// Subject prefix, e.g. `t_abcdefghij`.
    pub prefix: String,
    /// Stream name, e.g. `T_ABCDEFGHIJ`.
    pub stream: String,
}

impl Isolation {
    /// `TELEMETRY_STREAM_MAX_BYTES` for test streams. JetStream reserves a stream's
    /// whole cap from the server's storage limit when it is created; at the 8 GiB
    /// default a handful of tests at once (or streams left by a killed run) would use
    /// up what the shared server allows and the next test's stream would be refused.
    /// Tests store a few MB.
    pub const STREAM_MAX_BYTES: i64 = 256 * 1024 * 1024;

    /// Fresh names on the shared server.
    pub fn new() -> Self {
        Self::on(shared_nats_url())
    }

    /// Fresh names on the server at `nats_url`.
    pub fn on(nats_url: String) -> Self {
        let token = random_token();
        Self {
            nats_url,
            prefix: format!("t_{token}"),
            stream: format!("T_{}", token.to_uppercase()),
        }
    }
}

/// Creates `config`'s stream (or gets it), retrying for up to 10 s while the server
/// says it cannot create the stream's store, or (a cluster just formed) that it has no
/// peers to place it on.
///
/// Why: nats-server 2.9 removes an account's store directory when its last stream is
/// deleted, and a create racing with that fails with "could not create storage
/// directory" (10077 in its log, 10049 "error creating store for stream" to the
/// client). Tests run in parallel, each deleting its own stream on drop, so on an
/// otherwise empty server another test's delete can land between this one's checks.
/// And a three-node cluster whose JetStream answers may not have heard from every
/// peer yet: an R3 stream then fails with "no suitable peers for placement" (10005;
/// seen once in CI on a loaded machine). The services themselves retry stream creation
/// anyway (the collector's attach loop, the SDK's publisher).
pub async fn create_stream(
    js: &async_nats::jetstream::Context,
    config: async_nats::jetstream::stream::Config,
) -> async_nats::jetstream::stream::Stream {
    use async_nats::jetstream::context::CreateStreamErrorKind;
    use async_nats::jetstream::ErrorCode;
    let started = Instant::now();
    loop {
        match js.get_or_create_stream(config.clone()).await {
            Ok(stream) => return stream,
            Err(err)
                if started.elapsed() < Duration::from_secs(10)
                    && matches!(err.kind(), CreateStreamErrorKind::JetStream(ref js_err)
                        if [
                            ErrorCode::STREAM_CREATE,
                            ErrorCode::STREAM_STORE_FAILED,
                            // A cluster just formed: its meta leader does not know every
                            // peer yet, so a replicated stream has nowhere to go.
                            ErrorCode::CLUSTER_NO_PEERS,
                        ]
                        .contains(&js_err.error_code())) =>
            {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(err) => panic!("create stream {}: {err}", config.name),
        }
    }
}

impl Default for Isolation {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Isolation {
    fn drop(&mut self) {
        let url = self.nats_url.clone();
        let stream = self.stream.clone();
        // Drop cannot await; a short-lived runtime on its own thread can.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                let client =
                    tokio::time::timeout(Duration::from_secs(2), async_nats::connect(urls(&url)))
                        .await
                        .ok()?
                        .ok()?;
                let js = async_nats::jetstream::new(client);
                let _ =
                    tokio::time::timeout(Duration::from_secs(2), js.delete_stream(&stream)).await;
                Some(())
            })
        })
        .join();
    }
}

/// A `NATS_URL` value's servers: one URL or several, comma-separated (a cluster).
pub fn urls(nats_url: &str) -> Vec<&str> {
    nats_url.split(',').map(str::trim).collect()
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// Starts `command` (a `nats-server` with its flags) with its output discarded (it
/// logs to a file); fails the test with how to install it when it cannot run.
pub(crate) fn spawn_nats_server(command: &mut Command) -> Child {
    command
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|err| {
            panic!(
                "cannot run `nats-server` ({err}). Install it (`apt-get install nats-server`) \
                 or run `bash scripts/services.sh`."
            )
        })
}

/// A private `nats-server -js` on a free port, with its own store directory that
/// survives [`NatsServer::kill`] so a restart keeps the JetStream data.
pub struct NatsServer {
    port: u16,
    store: tempfile::TempDir,
    child: Option<Child>,
    /// Server certificate and key (PEM files): the server then requires TLS.
    tls: Option<(PathBuf, PathBuf)>,
    /// CA of client certificates: the server then requires one signed by it.
    client_ca: Option<PathBuf>,
}

impl NatsServer {
    /// Picks a port and a store directory but does not start the server yet.
    pub fn unstarted() -> Self {
        Self {
            port: free_port(),
            store: tempfile::tempdir().expect("temp dir for the JetStream store"),
            child: None,
            tls: None,
            client_ca: None,
        }
    }

    /// Starts a server that requires TLS with this certificate and key (PEM files),
    /// and waits until it accepts connections.
    pub fn start_tls(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        let mut server = Self::unstarted();
        server.tls = Some((cert.into(), key.into()));
        server.restart();
        server
    }

    /// Like [`NatsServer::start_tls`], and clients must show a certificate signed by
    /// `client_ca` (`--tlsverify`).
    pub fn start_tls_verify(
        cert: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
        client_ca: impl Into<PathBuf>,
    ) -> Self {
        let mut server = Self::unstarted();
        server.tls = Some((cert.into(), key.into()));
        server.client_ca = Some(client_ca.into());
        server.restart();
        server
    }

    /// Starts a server and waits until it accepts connections.
    pub fn start() -> Self {
        let mut server = Self::unstarted();
        server.restart();
        server
    }

    /// The server's URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The JetStream store directory.
    pub fn store_dir(&self) -> PathBuf {
        self.store.path().to_owned()
    }

    /// (Re)starts the server on the same port and store, waiting until it listens.
    pub fn restart(&mut self) {
        self.kill();
        // JetStream's storage limit is fixed in a config file: left to itself the
        // server takes 75% of the disk's free space at start-up, and on a nearly full
        // disk (< ~11 GB free) it refuses the 8 GiB stream every test creates with
        // "insufficient storage resources available". The tests store a few MB.
        let config = self.store.path().join("nats.conf");
        std::fs::write(
            &config,
            format!(
                "jetstream {{\n  store_dir: {:?}\n  max_file_store: 1TB\n  max_memory_store: 1GB\n}}\n",
                self.store.path().display().to_string()
            ),
        )
        .expect("write the nats-server config");
        let mut command = Command::new("nats-server");
        command
            .arg("-c")
            .arg(&config)
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-l"])
            .arg(self.log_file());
        if let Some((cert, key)) = &self.tls {
            command
                .arg("--tls")
                .arg("--tlscert")
                .arg(cert)
                .arg("--tlskey")
                .arg(key);
        }
        if let Some(client_ca) = &self.client_ca {
            command.arg("--tlsverify").arg("--tlscacert").arg(client_ca);
        }
        self.child = Some(spawn_nats_server(&mut command));
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "nats-server did not start listening on port {} within 10 s; its log:\n{}",
                self.port,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Where the server logs (inside the store directory, gone with it).
    pub fn log_file(&self) -> PathBuf {
        self.store.path().join("nats-server.log")
    }

    /// The server's log so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_file()).unwrap_or_else(|err| format!("(no log: {err})"))
    }

    /// Kills the server (SIGKILL) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the server process is running.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A fresh Postgres database, dropped (with its connections) on drop.
#[derive(Debug)]
pub struct PgDatabase {
    admin_url: String,
    /// Database name.
    pub name: String,
    /// URL of the new database.
    pub url: String,
    /// A tablespace of its own ([`PgDatabase::create_in`]), dropped after it.
    tablespace: Option<String>,
}

fn postgres_admin_url() -> String {
    std::env::var("TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_TEST_POSTGRES_URL.to_owned())
}

fn with_database(admin_url: &str, name: &str) -> String {
    let (base, _) = admin_url
        .rsplit_once('/')
        .expect("postgres URL has a database path");
    format!("{base}/{name}")
}

impl PgDatabase {
    /// Creates `test_<random>`. Panics with how to start Postgres when it is not up.
    pub async fn create() -> Self {
        use sqlx::Connection;
        let admin_url = postgres_admin_url();
        let mut admin = sqlx::PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|err| {
                panic!(
                    "Postgres is not reachable at {admin_url} ({err}). Start it with \
                 `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` \
                 (or run `bash scripts/services.sh`), or point TEST_POSTGRES_URL at one."
                )
            });
        let name = format!("test_{}", random_token());
        sqlx::query(&format!(r#"CREATE DATABASE "{name}""#))
            .execute(&mut admin)
            .await
            .expect("create a test database");
        let _ = admin.close().await;
        let url = with_database(&admin_url, &name);
        Self {
            admin_url,
            name,
            url,
            tablespace: None,
        }
    }

    /// Creates `test_<random>` whose tables go to a new tablespace at `location` (an
    /// empty directory owned by the server's user, such as a [`tmpfs::Tmpfs`]): what
    /// a full disk does to Postgres, without filling the server's own disk.
    pub async fn create_in(location: &std::path::Path) -> Self {
        use sqlx::Connection;
        let mut db = Self::create().await;
        let tablespace = format!("ts_{}", random_token());
        let mut admin = sqlx::PgConnection::connect(&db.admin_url)
            .await
            .expect("connect to Postgres");
        let location = location.display().to_string().replace('\'', "''");
        sqlx::query(&format!(
            r#"CREATE TABLESPACE "{tablespace}" LOCATION '{location}'"#
        ))
        .execute(&mut admin)
        .await
        .expect("create a tablespace (the directory must be empty and owned by postgres)");
        db.tablespace = Some(tablespace.clone());
        sqlx::query(&format!(
            r#"ALTER DATABASE "{}" SET default_tablespace = "{tablespace}""#,
            db.name
        ))
        .execute(&mut admin)
        .await
        .expect("set the database's default tablespace");
        let _ = admin.close().await;
        db
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let tablespace = self.tablespace.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            runtime.block_on(async {
                use sqlx::Connection;
                let mut admin = sqlx::PgConnection::connect(&admin_url).await.ok()?;
                sqlx::query(&format!(r#"DROP DATABASE IF EXISTS "{name}" WITH (FORCE)"#))
                    .execute(&mut admin)
                    .await
                    .ok()?;
                if let Some(tablespace) = tablespace {
                    sqlx::query(&format!(r#"DROP TABLESPACE IF EXISTS "{tablespace}""#))
                        .execute(&mut admin)
                        .await
                        .ok()?;
                }
                Some(())
            })
        })
        .join();
    }
}

/// One message read back from a stream.
#[derive(Debug, Clone)]
pub struct StoredMessage {
    /// Subject it was published on.
    pub subject: String,
    /// Stream sequence.
    pub sequence: u64,
    /// The `Nats-Msg-Id` header, if any.
    pub msg_id: Option<String>,
    /// Raw payload.
    pub payload: Vec<u8>,
}

/// Reads every message of `stream` (in stream order) with an ephemeral pull consumer,
/// waiting up to `wait` for at least `at_least` messages to be there.
pub async fn read_stream(
    nats_url: &str,
    stream: &str,
    at_least: usize,
    wait: Duration,
) -> Vec<StoredMessage> {
    use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
    use futures::StreamExt as _;
    let client = async_nats::connect(urls(nats_url))
        .await
        .unwrap_or_else(|err| panic!("connect to {nats_url}: {err}"));
    let js = async_nats::jetstream::new(client);
    let started = Instant::now();
    let mut stream_handle = js
        .get_stream(stream)
        .await
        .unwrap_or_else(|err| panic!("stream {stream}: {err}"));
    loop {
        let info = stream_handle.info().await.expect("stream info");
        if info.state.messages as usize >= at_least || started.elapsed() >= wait {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let total = stream_handle
        .info()
        .await
        .expect("stream info")
        .state
        .messages as usize;
    let consumer = stream_handle
        .create_consumer(pull::Config {
            deliver_policy: DeliverPolicy::All,
            ack_policy: AckPolicy::None,
            inactive_threshold: Duration::from_secs(30),
            ..Default::default()
        })
        .await
        .expect("ephemeral consumer");
    let mut out = Vec::with_capacity(total);
    while out.len() < total {
        let mut batch = consumer
            .batch()
            .max_messages(1000)
            .expires(Duration::from_millis(500))
            .messages()
            .await
            .expect("fetch a batch");
        let before = out.len();
        while let Some(message) = batch.next().await {
            let message = message.expect("message");
            let sequence = message.info().map(|i| i.stream_sequence).unwrap_or(0);
            let msg_id = message
                .headers
                .as_ref()
                .and_then(|h| h.get("Nats-Msg-Id"))
                .map(|v| v.to_string());
            out.push(StoredMessage {
                subject: message.subject.to_string(),
                sequence,
                msg_id,
                payload: message.payload.to_vec(),
            });
        }
        if out.len() == before && started.elapsed() > wait + Duration::from_secs(10) {
            break;
        }
    }
    out
}
