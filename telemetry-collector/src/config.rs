//! Settings: the command line (clap, every flag backed by an environment variable) and
//! the plain [`Settings`] value tests build directly. Every bound has a named default
//! and a knob.
//!
//! One place per rule: a number's range is its flag's `value_parser` (clap refuses
//! `--batch-size 0` naming the flag and the range; `service_kit::cli::parse_or_exit`
//! prints that on one line with the environment variable); [`Settings::validate`]
//! keeps what a range cannot say (names, URLs, the token, one value against another).
//! Secrets (`DATABASE_URL`, which may carry a password, `MONITOR_TOKEN`, the NATS
//! password and token) are [`SecretString`]s, so `{:?}` of the flags or the settings
//! prints `[REDACTED]` for them.

use std::net::SocketAddr;
use std::time::Duration;

use clap::builder::RangedU64ValueParser;
use service_kit::cli::{LogFormat, NatsArgs};
use service_kit::http_server::{HttpArgs, HttpLimits};
use service_kit::nats::DEFAULT_NATS_URL;
pub use service_kit::ConfigError;
use service_kit::{ExposeSecret as _, NatsConfig, SecretString};
use telemetry_proto::stream::{validate_stream_name, DEFAULT_MAX_BYTES, DEFAULT_STREAM};
use telemetry_proto::subjects::DEFAULT_PREFIX;
use telemetry_proto::{StreamSpec, Subjects};

use crate::store::stale::{MAX_STALE_RUN_AFTER, MIN_STALE_RUN_AFTER};
use crate::store::{
    StoreOptions, DEFAULT_ACQUIRE_TIMEOUT, DEFAULT_BUSY_TIMEOUT, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_WRITERS, MAX_WRITERS,
};

/// Default database (`DATABASE_URL`).
pub const DEFAULT_DATABASE_URL: &str = "sqlite://telemetry.db";
/// Default HTTP address (`COLLECTOR_ADDR`).
pub const DEFAULT_ADDR: &str = "127.0.0.1:8080";
/// Default durable consumer name (`COLLECTOR_CONSUMER`); collectors sharing it share
/// the work.
pub const DEFAULT_CONSUMER: &str = "telemetry-collector";
/// Most messages in one batch (one transaction). 5,000 rather than 1,000: fewer commits
/// (+15% SQLite, +35% Postgres bare insert measured); the linger still bounds latency.
pub const DEFAULT_BATCH_SIZE: usize = 5_000;
/// Upper bound for the batch size knob.
pub const MAX_BATCH_SIZE: usize = 10_000;
/// How long a partial batch waits for more messages before it is written.
pub const DEFAULT_BATCH_LINGER: Duration = Duration::from_millis(50);
/// How long the broker waits for an ack before redelivering. Long batches extend it
/// with in-progress acks while retrying.
pub const DEFAULT_ACK_WAIT: Duration = Duration::from_secs(30);
/// Messages delivered but not yet acked, per consumer (all collectors together). Each
/// collector holds up to five batches unacked (pulling, parsed, two writing on
/// Postgres, acking): room for two collectors at the default batch size, so the broker
/// never pauses them.
pub const DEFAULT_MAX_ACK_PENDING: i64 = 50_000;
/// First delay after a database error; doubles up to [`DEFAULT_MAX_BACKOFF`].
pub const DEFAULT_MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest delay between retries of a failed batch.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Upper bound of `MONITOR_FAILED_AUTH_DELAY_MS`: longer only holds connections open.
pub const MAX_FAILED_AUTH_DELAY: Duration = Duration::from_secs(10);
/// Upper bound of `MONITOR_MAX_TOKEN_CHECKS`: the throttle must stay a throttle.
pub const MAX_TOKEN_CHECKS_LIMIT: usize = 64;
/// Largest request body the HTTP API accepts (it only serves GETs).
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;

/// Everything a collector needs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where the broker is.
    pub nats: NatsConfig,
    /// Subject prefix (`TELEMETRY_SUBJECT_PREFIX`).
    pub subject_prefix: String,
    /// Stream name (`TELEMETRY_STREAM`).
    pub stream: String,
    /// Disk cap of the stream when the collector creates it
    /// (`TELEMETRY_STREAM_MAX_BYTES`, see [`DEFAULT_MAX_BYTES`]).
    pub stream_max_bytes: i64,
    /// Copies of the stream when the collector creates it or `stream update` applies
    /// the spec (`TELEMETRY_STREAM_REPLICAS`).
    pub stream_replicas: usize,
    /// Durable consumer name (`COLLECTOR_CONSUMER`).
    pub consumer: String,
    /// `sqlite://PATH` or `postgres://...` (`DATABASE_URL`); secret because a Postgres
    /// URL may carry the password.
    pub database_url: SecretString,
    /// HTTP address (`COLLECTOR_ADDR`); `None` ingests without serving HTTP. Port 0
    /// picks a free port ([`crate::Application::port`]).
    pub http_addr: Option<SocketAddr>,
    /// Header, body and idle timeouts and the connection bound of the HTTP server.
    pub http: HttpLimits,
    /// Run the ingest loop (off only for a read-only API).
    pub ingest: bool,
    /// See [`DEFAULT_BATCH_SIZE`].
    pub batch_size: usize,
    /// See [`DEFAULT_BATCH_LINGER`].
    pub batch_linger: Duration,
    /// See [`DEFAULT_ACK_WAIT`].
    pub ack_wait: Duration,
    /// See [`DEFAULT_MAX_ACK_PENDING`].
    pub max_ack_pending: i64,
    /// See [`DEFAULT_MIN_BACKOFF`].
    pub min_backoff: Duration,
    /// See [`DEFAULT_MAX_BACKOFF`].
    pub max_backoff: Duration,
    /// Periodic prune of old rows (`COLLECTOR_RETENTION`); `None` (the default) keeps
    /// everything.
    pub retention: Option<crate::retention::Retention>,
    /// How often the consumer's backlog is read from the broker
    /// (`COLLECTOR_BACKLOG_INTERVAL_SECS`, see [`crate::backlog::DEFAULT_BACKLOG_INTERVAL`]).
    pub backlog_interval: Duration,
    /// See [`DEFAULT_MAX_BODY_BYTES`].
    pub max_body_bytes: usize,
    /// Pool sizes and timeouts.
    pub store: StoreOptions,
    /// Monitor access (`MONITOR_TOKEN`, `--insecure-no-auth`, `MONITOR_IMAGE_BASE_URL`).
    pub monitor: MonitorSettings,
}

/// Who may read the monitor and the API, and where output images are served.
#[derive(Debug, Clone)]
pub struct MonitorSettings {
    /// When set, every `/monitor` page and `/api/v1` call needs it (bearer or login
    /// cookie); `/healthz`, `/readyz`, `/metrics` stay open.
    pub token: Option<SecretString>,
    /// Serve without a token on a non-loopback address (refused otherwise).
    pub insecure_no_auth: bool,
    /// Base URL of the renderer's images (`http://host:8081/images`): variants link
    /// their output there. `None`: no link.
    pub image_base_url: Option<String>,
    /// See [`crate::monitor::DEFAULT_MAX_LIVE_CLIENTS`].
    pub max_live_clients: usize,
    /// See [`crate::monitor::auth::DEFAULT_FAILED_AUTH_DELAY`].
    pub failed_auth_delay: Duration,
    /// See [`crate::monitor::auth::DEFAULT_MAX_TOKEN_CHECKS`].
    pub max_token_checks: usize,
    /// See [`crate::monitor::DEFAULT_MAX_OVERVIEW_QUERIES`].
    pub max_overview_queries: usize,
    /// See [`crate::monitor::DEFAULT_OVERVIEW_QUEUE_WAIT`].
    pub overview_queue_wait: Duration,
    /// See [`crate::monitor::sessions::DEFAULT_SESSION_TTL`].
    pub session_ttl: Duration,
    /// See [`crate::monitor::producers::DEFAULT_PRODUCER_SILENT_AFTER`].
    pub producer_silent_after: Duration,
    /// See [`crate::store::stale::DEFAULT_STALE_RUN_AFTER`] (`COLLECTOR_STALE_RUN_AFTER`).
    pub stale_run_after: Duration,
    /// Whether `/readyz` names the database's error: only on a loopback
    /// `COLLECTOR_ADDR` (off loopback it says `unavailable` and the log has the
    /// detail). [`ServeArgs::settings`] sets it from the address; `false` by default,
    /// [`Settings::new`] (loopback) turns it on.
    pub readyz_detail: bool,
}

impl Default for MonitorSettings {
    fn default() -> Self {
        Self {
            token: None,
            insecure_no_auth: false,
            image_base_url: None,
            max_live_clients: crate::monitor::DEFAULT_MAX_LIVE_CLIENTS,
            failed_auth_delay: crate::monitor::auth::DEFAULT_FAILED_AUTH_DELAY,
            max_token_checks: crate::monitor::auth::DEFAULT_MAX_TOKEN_CHECKS,
            max_overview_queries: crate::monitor::DEFAULT_MAX_OVERVIEW_QUERIES,
            overview_queue_wait: crate::monitor::DEFAULT_OVERVIEW_QUEUE_WAIT,
            session_ttl: crate::monitor::sessions::DEFAULT_SESSION_TTL,
            producer_silent_after: crate::monitor::producers::DEFAULT_PRODUCER_SILENT_AFTER,
            stale_run_after: crate::store::stale::DEFAULT_STALE_RUN_AFTER,
            readyz_detail: false,
        }
    }
}

impl Settings {
    /// Defaults for everything but where things are: what tests start from.
    pub fn new(nats_url: &str, subject_prefix: &str, stream: &str, database_url: &str) -> Self {
        Self {
            nats: NatsConfig {
                url: nats_url.to_owned(),
                connection_name: "telemetry-collector".to_owned(),
                ..NatsConfig::default()
            },
            subject_prefix: subject_prefix.to_owned(),
            stream: stream.to_owned(),
            stream_max_bytes: DEFAULT_MAX_BYTES,
            stream_replicas: 1,
            consumer: DEFAULT_CONSUMER.to_owned(),
            database_url: database_url.into(),
            http_addr: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            http: HttpLimits::default(),
            ingest: true,
            batch_size: DEFAULT_BATCH_SIZE,
            batch_linger: DEFAULT_BATCH_LINGER,
            ack_wait: DEFAULT_ACK_WAIT,
            max_ack_pending: DEFAULT_MAX_ACK_PENDING,
            min_backoff: DEFAULT_MIN_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
            retention: None,
            backlog_interval: crate::backlog::DEFAULT_BACKLOG_INTERVAL,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            store: StoreOptions::default(),
            // The address above is loopback: `/readyz` may say why the database fails.
            monitor: MonitorSettings {
                readyz_detail: true,
                ..MonitorSettings::default()
            },
        }
    }

    /// Checks every value and derives the subjects and stream definition.
    pub fn validate(&self) -> Result<(Subjects, StreamSpec), ConfigError> {
        self.nats.validate()?;
        let subjects = Subjects::new(&self.subject_prefix)
            .map_err(|err| ConfigError::new("TELEMETRY_SUBJECT_PREFIX", err.to_string()))?;
        validate_stream_name(&self.stream)
            .map_err(|reason| ConfigError::new("TELEMETRY_STREAM", reason))?;
        validate_stream_name(&self.consumer)
            .map_err(|reason| ConfigError::new("COLLECTOR_CONSUMER", reason))?;
        let database_url = self.database_url.expose_secret();
        let scheme_ok = ["sqlite:", "postgres:", "postgresql:"]
            .iter()
            .any(|scheme| database_url.starts_with(scheme));
        if !scheme_ok {
            // Only the scheme: the rest may hold a password.
            let scheme = database_url.split(':').next().unwrap_or_default();
            return Err(ConfigError::new(
                "DATABASE_URL",
                format!("{scheme:?} must start with sqlite:// or postgres://"),
            ));
        }
        if self.max_ack_pending < self.batch_size as i64 {
            return Err(ConfigError::new(
                "COLLECTOR_MAX_ACK_PENDING",
                "must be at least the batch size",
            ));
        }
        if let Some(retention) = &self.retention {
            if retention.interval.is_zero() {
                return Err(ConfigError::new(
                    "COLLECTOR_RETENTION_INTERVAL",
                    "must be greater than zero",
                ));
            }
        }
        let stream = StreamSpec::new(self.stream.clone(), subjects.clone())
            .with_max_bytes(self.stream_max_bytes)
            .map_err(|reason| ConfigError::new("TELEMETRY_STREAM_MAX_BYTES", reason))?
            .with_replicas(self.stream_replicas)
            .map_err(|reason| ConfigError::new("TELEMETRY_STREAM_REPLICAS", reason))?;
        self.validate_monitor()?;
        Ok((subjects, stream))
    }
}

impl Settings {
    /// The monitor's rules: a token is not empty, a non-loopback address needs one
    /// (or `--insecure-no-auth`), the image base URL is http(s).
    fn validate_monitor(&self) -> Result<(), ConfigError> {
        let monitor = &self.monitor;
        let token = monitor.token.as_ref().map(|token| token.expose_secret());
        if token.is_some_and(|t| t.trim().is_empty()) {
            return Err(ConfigError::new("MONITOR_TOKEN", "must not be empty"));
        }
        if let Some(token) = token {
            let min = crate::monitor::auth::MIN_TOKEN_CHARS;
            if token.chars().count() < min {
                return Err(ConfigError::new(
                    "MONITOR_TOKEN",
                    format!("must be at least {min} characters (e.g. `openssl rand -hex 16`)"),
                ));
            }
            if token.len() > crate::monitor::auth::MAX_TOKEN_BYTES {
                return Err(ConfigError::new(
                    "MONITOR_TOKEN",
                    format!(
                        "must be at most {} bytes",
                        crate::monitor::auth::MAX_TOKEN_BYTES
                    ),
                ));
            }
        }
        let max_ttl = crate::monitor::sessions::MAX_SESSION_TTL;
        if monitor.session_ttl < Duration::from_secs(1) || monitor.session_ttl > max_ttl {
            return Err(ConfigError::new(
                "MONITOR_SESSION_TTL",
                format!("must be between 1s and {}d", max_ttl.as_secs() / 86_400),
            ));
        }
        let (min, max) = (MIN_STALE_RUN_AFTER, MAX_STALE_RUN_AFTER);
        if monitor.stale_run_after < min || monitor.stale_run_after > max {
            return Err(ConfigError::new(
                "COLLECTOR_STALE_RUN_AFTER",
                format!(
                    "must be between {}s and {}d",
                    min.as_secs(),
                    max.as_secs() / 86_400
                ),
            ));
        }
        let silent = monitor.producer_silent_after;
        let max = crate::monitor::producers::MAX_PRODUCER_SILENT_AFTER;
        if silent < Duration::from_secs(1) || silent > max {
            return Err(ConfigError::new(
                "COLLECTOR_PRODUCER_SILENT_AFTER",
                format!("must be between 1s and {}d", max.as_secs() / 86_400),
            ));
        }
        let exposed = self.http_addr.is_some_and(|addr| !addr.ip().is_loopback());
        if exposed && monitor.token.is_none() && !monitor.insecure_no_auth {
            return Err(ConfigError::new(
                "MONITOR_TOKEN",
                "required when COLLECTOR_ADDR is not a loopback address (or pass --insecure-no-auth)",
            ));
        }
        if let Some(url) = &monitor.image_base_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ConfigError::new(
                    "MONITOR_IMAGE_BASE_URL",
                    format!("{url:?} must start with http:// or https://"),
                ));
            }
        }
        Ok(())
    }
}

/// `telemetry-collector`: drains render telemetry into SQLite or Postgres.
#[derive(Debug, clap::Parser)]
#[command(name = "telemetry-collector", version, about)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
    /// Log lines as human-readable text or as one JSON object per line.
    #[arg(
        long = "log-format",
        env = "LOG_FORMAT",
        global = true,
        value_enum,
        default_value_t
    )]
    pub log_format: LogFormat,
}

/// Subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Ingest from the stream and serve HTTP (health, metrics, JSON API).
    Serve(ServeArgs),
    /// Ingest only (no HTTP).
    Ingest(IngestArgs),
    /// Apply the database migrations and exit.
    Migrate(DatabaseArgs),
    /// Delete rows older than an age (dry run: count them per table).
    Prune(crate::retention::PruneArgs),
    /// Rebuild the database from what the stream still holds.
    Replay(crate::replay::ReplayArgs),
    /// List, show, requeue (re-decode) or purge dead letters.
    DeadLetters(crate::dead_letters::DeadLetterArgs),
    /// Show the telemetry stream, create it, or update it to the configured spec
    /// (replicas, limits, subjects).
    Stream(crate::stream_admin::StreamArgs),
    /// Check the overview's time-series rollups against a recount, or recount them.
    Rollups(crate::rollups_admin::RollupsArgs),
}

/// Database flags.
#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseArgs {
    /// `sqlite://PATH` (created if missing) or `postgres://USER@HOST/DB`.
    #[arg(long = "database-url", env = "DATABASE_URL", hide_env_values = true, default_value = DEFAULT_DATABASE_URL)]
    pub database_url: SecretString,
    /// Pool size (Postgres) or readers (SQLite).
    #[arg(long = "database-max-connections", env = "DATABASE_MAX_CONNECTIONS", default_value_t = DEFAULT_MAX_CONNECTIONS,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub max_connections: u32,
    /// Batches written at once on Postgres, each on its own connection (SQLite: one).
    #[arg(long = "database-writers", env = "DATABASE_WRITERS", default_value_t = DEFAULT_WRITERS,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(MAX_WRITERS)))]
    pub writers: u32,
    /// SQLite busy timeout in milliseconds.
    #[arg(long = "database-busy-timeout-ms", env = "DATABASE_BUSY_TIMEOUT_MS", default_value_t = DEFAULT_BUSY_TIMEOUT.as_millis() as u64)]
    pub busy_timeout_ms: u64,
}

/// Ingest flags.
#[derive(Debug, Clone, clap::Args)]
pub struct IngestArgs {
    /// NATS connection, subject prefix and stream.
    #[command(flatten)]
    pub nats: NatsArgs,
    /// Database.
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Durable consumer name; collectors sharing it share the work.
    #[arg(long = "consumer", env = "COLLECTOR_CONSUMER", default_value = DEFAULT_CONSUMER)]
    pub consumer: String,
    /// Most messages per batch (one transaction).
    #[arg(long = "batch-size", env = "COLLECTOR_BATCH_SIZE", default_value_t = DEFAULT_BATCH_SIZE,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=MAX_BATCH_SIZE as u64))]
    pub batch_size: usize,
    /// Milliseconds a partial batch waits for more messages (at most 10 s).
    #[arg(long = "batch-linger-ms", env = "COLLECTOR_BATCH_LINGER_MS", default_value_t = DEFAULT_BATCH_LINGER.as_millis() as u64,
          value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub batch_linger_ms: u64,
    /// Seconds before the broker redelivers an unacked message.
    #[arg(long = "ack-wait-secs", env = "COLLECTOR_ACK_WAIT_SECS", default_value_t = DEFAULT_ACK_WAIT.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    pub ack_wait_secs: u64,
    /// Unacked messages the consumer allows (all collectors together).
    #[arg(long = "max-ack-pending", env = "COLLECTOR_MAX_ACK_PENDING", default_value_t = DEFAULT_MAX_ACK_PENDING)]
    pub max_ack_pending: i64,
    /// Delete rows older than this age (30d, 12h, ...) periodically; off when unset.
    #[arg(long = "retention", env = "COLLECTOR_RETENTION", value_parser = crate::retention::parse_age)]
    pub retention: Option<Duration>,
    /// Time between two retention prunes (1h, 10m, ...).
    #[arg(long = "retention-interval", env = "COLLECTOR_RETENTION_INTERVAL", default_value = "1h", value_parser = crate::retention::parse_age)]
    pub retention_interval: Duration,
    /// Rows per table deleted in one retention transaction.
    #[arg(long = "prune-batch-size", env = "COLLECTOR_PRUNE_BATCH_SIZE", default_value_t = crate::retention::DEFAULT_PRUNE_BATCH,
          value_parser = clap::value_parser!(i64).range(1..=crate::retention::MAX_PRUNE_BATCH))]
    pub prune_batch_size: i64,
    /// Seconds between two reads of the consumer's backlog from the broker (the
    /// `collector_consumer_pending` / `_ack_pending` / `collector_oldest_unacked_age_seconds`
    /// gauges).
    #[arg(long = "backlog-interval-secs", env = "COLLECTOR_BACKLOG_INTERVAL_SECS", default_value_t = crate::backlog::DEFAULT_BACKLOG_INTERVAL.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=crate::backlog::MAX_BACKLOG_INTERVAL.as_secs()))]
    pub backlog_interval_secs: u64,
}

/// `serve` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Ingest flags.
    #[command(flatten)]
    pub ingest: IngestArgs,
    /// HTTP listen address.
    #[arg(long = "addr", env = "COLLECTOR_ADDR", default_value = DEFAULT_ADDR)]
    pub addr: String,
    /// HTTP read timeouts and connection bound (`HTTP_HEADER_TIMEOUT_MS`, ...).
    #[command(flatten)]
    pub http: HttpArgs,
    /// Token the monitor and API require (bearer header or login form).
    #[arg(long = "monitor-token", env = "MONITOR_TOKEN", hide_env_values = true)]
    pub monitor_token: Option<SecretString>,
    /// Serve the monitor without a token on a non-loopback address.
    #[arg(long = "insecure-no-auth", env = "MONITOR_INSECURE_NO_AUTH")]
    pub insecure_no_auth: bool,
    /// Base URL of output images (e.g. http://127.0.0.1:8081/images) for variant links.
    #[arg(long = "image-base-url", env = "MONITOR_IMAGE_BASE_URL")]
    pub image_base_url: Option<String>,
    /// Live (SSE) views open at once; each re-reads the database every second.
    #[arg(long = "monitor-max-live-clients", env = "MONITOR_MAX_LIVE_CLIENTS", default_value_t = crate::monitor::DEFAULT_MAX_LIVE_CLIENTS,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=crate::monitor::MAX_LIVE_CLIENTS_LIMIT as u64))]
    pub max_live_clients: usize,
    /// How long a wrong monitor token waits for its answer, in milliseconds.
    #[arg(long = "monitor-failed-auth-delay-ms", env = "MONITOR_FAILED_AUTH_DELAY_MS", default_value_t = crate::monitor::auth::DEFAULT_FAILED_AUTH_DELAY.as_millis() as u64,
          value_parser = clap::value_parser!(u64).range(..=MAX_FAILED_AUTH_DELAY.as_millis() as u64))]
    pub failed_auth_delay_ms: u64,
    /// Wrong monitor tokens from one client address waiting out the delay at once;
    /// more wrong ones from it get 429 (the right token is never held up).
    #[arg(long = "monitor-max-token-checks", env = "MONITOR_MAX_TOKEN_CHECKS", default_value_t = crate::monitor::auth::DEFAULT_MAX_TOKEN_CHECKS,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=MAX_TOKEN_CHECKS_LIMIT as u64))]
    pub max_token_checks: usize,
    /// Overview (stats) queries at once; each reads every run in its window.
    #[arg(long = "monitor-max-overview-queries", env = "MONITOR_MAX_OVERVIEW_QUERIES", default_value_t = crate::monitor::DEFAULT_MAX_OVERVIEW_QUERIES,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=crate::monitor::MAX_OVERVIEW_QUERIES_LIMIT as u64))]
    pub max_overview_queries: usize,
    /// How long an overview (stats) request waits for one of those queries before 503.
    #[arg(long = "monitor-overview-queue-wait-ms", env = "MONITOR_OVERVIEW_QUEUE_WAIT_MS", default_value_t = crate::monitor::DEFAULT_OVERVIEW_QUEUE_WAIT.as_millis() as u64,
          value_parser = clap::value_parser!(u64).range(1..=crate::monitor::MAX_OVERVIEW_QUEUE_WAIT.as_millis() as u64))]
    pub overview_queue_wait_ms: u64,
    /// How long a monitor login lasts (12h, 30m, 7d, ...); logging out ends it sooner.
    #[arg(long = "monitor-session-ttl", env = "MONITOR_SESSION_TTL", default_value = "12h", value_parser = crate::retention::parse_age)]
    pub session_ttl: Duration,
    /// How long a producer may send nothing (no event, no stats) before the loss
    /// ledger flags it as silent, unless its last stats were final (30s, 2m, ...).
    #[arg(long = "producer-silent-after", env = "COLLECTOR_PRODUCER_SILENT_AFTER", default_value = "30s", value_parser = crate::retention::parse_age)]
    pub producer_silent_after: Duration,
    /// How long after its start a run without completion is shown as stale (10m,
    /// 30m, 1h, ...; whole seconds at least, a week at most). Derived when read,
    /// never stored: a late completion still wins.
    #[arg(long = "stale-run-after", env = "COLLECTOR_STALE_RUN_AFTER", default_value = "10m", value_parser = crate::retention::parse_age)]
    pub stale_run_after: Duration,
}

impl DatabaseArgs {
    fn apply(&self, settings: &mut Settings) {
        settings.database_url = self.database_url.clone();
        settings.store.max_connections = self.max_connections;
        settings.store.writers = self.writers;
        settings.store.busy_timeout = Duration::from_millis(self.busy_timeout_ms);
        settings.store.acquire_timeout = DEFAULT_ACQUIRE_TIMEOUT;
    }

    /// Settings for `migrate`.
    pub fn settings(&self) -> Settings {
        let mut settings = Settings::new(
            DEFAULT_NATS_URL,
            DEFAULT_PREFIX,
            DEFAULT_STREAM,
            self.database_url.expose_secret(),
        );
        self.apply(&mut settings);
        settings
    }
}

impl IngestArgs {
    /// Settings for `ingest` (no HTTP).
    pub fn settings(&self) -> Settings {
        let mut settings = Settings::new(
            &self.nats.nats_url,
            &self.nats.subject_prefix,
            &self.nats.stream,
            self.database.database_url.expose_secret(),
        );
        settings.nats = self.nats.nats_config("telemetry-collector");
        settings.stream_max_bytes = self.nats.stream_max_bytes;
        settings.stream_replicas = self.nats.stream_replicas;
        self.database.apply(&mut settings);
        settings.http_addr = None;
        settings.consumer = self.consumer.clone();
        settings.batch_size = self.batch_size;
        settings.batch_linger = Duration::from_millis(self.batch_linger_ms);
        settings.ack_wait = Duration::from_secs(self.ack_wait_secs);
        settings.max_ack_pending = self.max_ack_pending;
        settings.retention = self.retention.map(|max_age| crate::retention::Retention {
            max_age,
            interval: self.retention_interval,
            batch: self.prune_batch_size,
        });
        settings.backlog_interval = Duration::from_secs(self.backlog_interval_secs);
        settings
    }
}

impl ServeArgs {
    /// Settings for `serve`.
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        let mut settings = self.ingest.settings();
        let addr = self.addr.parse().map_err(|_| {
            ConfigError::new(
                "COLLECTOR_ADDR",
                format!("{:?} is not an address like 127.0.0.1:8080", self.addr),
            )
        })?;
        settings.http_addr = Some(addr);
        settings.http = self.http.limits();
        settings.monitor = MonitorSettings {
            token: self.monitor_token.clone(),
            insecure_no_auth: self.insecure_no_auth,
            image_base_url: self.image_base_url.clone(),
            max_live_clients: self.max_live_clients,
            failed_auth_delay: Duration::from_millis(self.failed_auth_delay_ms),
            max_token_checks: self.max_token_checks,
            max_overview_queries: self.max_overview_queries,
            overview_queue_wait: Duration::from_millis(self.overview_queue_wait_ms),
            session_ttl: self.session_ttl,
            producer_silent_after: self.producer_silent_after,
            stale_run_after: self.stale_run_after,
            readyz_detail: addr.ip().is_loopback(),
        };
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> Settings {
        Settings::new(
            "nats://127.0.0.1:4222",
            "telemetry",
            "TELEMETRY",
            "sqlite://x.db",
        )
    }

    #[test]
    fn defaults_are_valid() {
        valid().validate().unwrap();
    }

    #[test]
    fn serve_takes_the_http_limits_flags() {
        use clap::{CommandFactory as _, Parser as _};
        Cli::command().debug_assert();
        let cli = Cli::try_parse_from([
            "telemetry-collector",
            "serve",
            "--http-header-timeout-ms",
            "1500",
            "--http-max-connections",
            "7",
            "--database-max-connections",
            "3",
        ])
        .unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("serve")
        };
        let settings = args.settings().unwrap();
        assert_eq!(settings.http.header_timeout, Duration::from_millis(1500));
        assert_eq!(settings.http.max_connections, 7);
        assert_eq!(settings.store.max_connections, 3);
        assert_eq!(
            settings.monitor.stale_run_after,
            crate::store::stale::DEFAULT_STALE_RUN_AFTER
        );
        let cli = Cli::try_parse_from(["telemetry-collector", "serve", "--stale-run-after", "30m"])
            .unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("serve")
        };
        let settings = args.settings().unwrap();
        assert_eq!(settings.monitor.stale_run_after, Duration::from_secs(1800));
        assert_eq!(
            settings.http.idle_timeout,
            service_kit::http_server::DEFAULT_HTTP_IDLE_TIMEOUT
        );
    }

    #[test]
    fn a_public_address_is_served_with_a_token_or_when_told_insecure() {
        let mut settings = valid();
        settings.http_addr = Some(SocketAddr::from(([0, 0, 0, 0], 8080)));
        settings.monitor.token = Some("sixteen-chars-ok".into());
        settings.validate().unwrap();
        settings.monitor.token = None;
        settings.monitor.insecure_no_auth = true;
        settings.validate().unwrap();
    }

    #[test]
    fn wrong_values_name_their_setting() {
        type Change = Box<dyn Fn(&mut Settings)>;
        let cases: Vec<(Change, &str)> = vec![
            (
                Box::new(|s| s.database_url = "mysql://x".into()),
                "DATABASE_URL",
            ),
            (
                Box::new(|s| s.stream_max_bytes = -1),
                "TELEMETRY_STREAM_MAX_BYTES",
            ),
            (
                Box::new(|s| s.consumer = "a.b".into()),
                "COLLECTOR_CONSUMER",
            ),
            (
                Box::new(|s| s.subject_prefix = "a b".into()),
                "TELEMETRY_SUBJECT_PREFIX",
            ),
            (
                Box::new(|s| s.nats.url = "nats://h:port".into()),
                "NATS_URL",
            ),
            (
                Box::new(|s| s.max_ack_pending = 1),
                "COLLECTOR_MAX_ACK_PENDING",
            ),
            (
                Box::new(|s| s.http_addr = Some(SocketAddr::from(([0, 0, 0, 0], 8080)))),
                "MONITOR_TOKEN",
            ),
            (
                Box::new(|s| s.monitor.token = Some(" ".into())),
                "MONITOR_TOKEN",
            ),
            (
                Box::new(|s| s.monitor.token = Some("fifteen-chars-x".into())),
                "MONITOR_TOKEN",
            ),
            (
                Box::new(|s| s.monitor.session_ttl = Duration::ZERO),
                "MONITOR_SESSION_TTL",
            ),
            (
                Box::new(|s| s.monitor.session_ttl = Duration::from_secs(31 * 86_400)),
                "MONITOR_SESSION_TTL",
            ),
            (
                Box::new(|s| s.monitor.stale_run_after = Duration::from_millis(500)),
                "COLLECTOR_STALE_RUN_AFTER",
            ),
            (
                Box::new(|s| s.monitor.stale_run_after = Duration::from_secs(8 * 86_400)),
                "COLLECTOR_STALE_RUN_AFTER",
            ),
            (
                Box::new(|s| s.monitor.producer_silent_after = Duration::ZERO),
                "COLLECTOR_PRODUCER_SILENT_AFTER",
            ),
            (
                Box::new(|s| s.monitor.image_base_url = Some("javascript:alert(1)".into())),
                "MONITOR_IMAGE_BASE_URL",
            ),
        ];
        for (change, setting) in cases {
            let mut settings = valid();
            change(&mut settings);
            let err = settings.validate().unwrap_err();
            assert_eq!(err.setting, setting, "{err}");
            assert!(!err.to_string().contains('\n'));
        }
    }

    /// Ranges are the flags' `value_parser`s: an out-of-range value is refused by clap,
    /// on one line naming the variable (and the flag) and the range.
    #[test]
    fn out_of_range_values_name_their_setting_and_range() {
        let cases = [
            ("--batch-size", "0", "COLLECTOR_BATCH_SIZE", "1..=10000"),
            (
                "--backlog-interval-secs",
                "0",
                "COLLECTOR_BACKLOG_INTERVAL_SECS",
                "1..=300",
            ),
            (
                "--backlog-interval-secs",
                "301",
                "COLLECTOR_BACKLOG_INTERVAL_SECS",
                "1..=300",
            ),
            ("--database-writers", "0", "DATABASE_WRITERS", "1..=8"),
            ("--database-writers", "9", "DATABASE_WRITERS", "1..=8"),
            (
                "--database-max-connections",
                "0",
                "DATABASE_MAX_CONNECTIONS",
                "1..",
            ),
            (
                "--http-body-timeout-ms",
                "0",
                "HTTP_BODY_TIMEOUT_MS",
                "1..=3600000",
            ),
            (
                "--batch-linger-ms",
                "0",
                "COLLECTOR_BATCH_LINGER_MS",
                "1..=10000",
            ),
            ("--ack-wait-secs", "0", "COLLECTOR_ACK_WAIT_SECS", "1.."),
            (
                "--prune-batch-size",
                "0",
                "COLLECTOR_PRUNE_BATCH_SIZE",
                "1..=50000",
            ),
            (
                "--monitor-failed-auth-delay-ms",
                "10001",
                "MONITOR_FAILED_AUTH_DELAY_MS",
                "..=10000",
            ),
            (
                "--monitor-max-token-checks",
                "0",
                "MONITOR_MAX_TOKEN_CHECKS",
                "1..=64",
            ),
            (
                "--monitor-max-overview-queries",
                "17",
                "MONITOR_MAX_OVERVIEW_QUERIES",
                "1..=16",
            ),
            (
                "--monitor-max-live-clients",
                "0",
                "MONITOR_MAX_LIVE_CLIENTS",
                "1..=1024",
            ),
            (
                "--monitor-overview-queue-wait-ms",
                "0",
                "MONITOR_OVERVIEW_QUEUE_WAIT_MS",
                "1..=3600000",
            ),
        ];
        for (flag, value, setting, range) in cases {
            let argv = ["telemetry-collector", "serve", flag, value];
            let line = service_kit::cli::refused_value::<Cli>(&argv)
                .unwrap_or_else(|| panic!("{flag} {value}: not refused"));
            let named = line.starts_with(&format!("invalid setting {setting}: "));
            assert!(
                named && line.contains(flag) && line.contains(range),
                "{line}"
            );
            assert!(!line.contains('\n'), "{line}");
        }
    }

    #[test]
    fn debug_of_the_flags_and_the_settings_shows_no_secret() {
        use clap::Parser as _;
        let secrets = [
            "postgres://collector:db-password-1@db/telemetry",
            "monitor-token-of-24-chars",
            "nats-password-2",
        ];
        let cli = Cli::try_parse_from([
            "telemetry-collector",
            "serve",
            "--database-url",
            secrets[0],
            "--monitor-token",
            secrets[1],
            "--nats-user",
            "collector",
            "--nats-password",
            secrets[2],
        ])
        .unwrap();
        let printed_cli = format!("{cli:?}");
        let Command::Serve(args) = cli.command else {
            panic!("serve")
        };
        let mut settings = args.settings().unwrap();
        settings.validate().unwrap();
        settings.nats.token = Some("nats-token-3".into());
        let printed = format!("{settings:?}");
        assert!(printed.contains("collector"), "{printed}");
        for secret in secrets.iter().chain(&["db-password-1", "nats-token-3"]) {
            assert!(!printed.contains(secret), "{secret} in {printed}");
            assert!(!printed_cli.contains(secret), "{secret} in {printed_cli}");
        }
    }
}
