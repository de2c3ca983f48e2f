//! Settings of the SDK, each bound with a named default.

use std::path::PathBuf;
use std::time::Duration;

use telemetry_proto::stream::{validate_stream_name, DEFAULT_MAX_BYTES, DEFAULT_STREAM};
use telemetry_proto::subjects::DEFAULT_PREFIX;
use telemetry_proto::{StreamSpec, Subjects};

use crate::error::ConfigError;

/// Default NATS server (`NATS_URL`).
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";
/// Events the queue holds before new ones are dropped. At ~1 KiB a typical event this
/// is a few MiB; the byte bound below caps the worst case.
pub const DEFAULT_QUEUE_CAPACITY: usize = 16_384;
/// Bytes (summed payload sizes) the queue holds before new events are dropped.
pub const DEFAULT_QUEUE_MAX_BYTES: usize = 64 * 1024 * 1024;
/// Publishes awaiting their JetStream ack at once. Well under async-nats' 2048-slot
/// command buffer, so the publisher itself can never block on a full buffer.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 512;
/// How long one publish waits for its ack before it is retried with the same id.
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(5);
/// How often `ProducerStats` is published.
pub const DEFAULT_STATS_INTERVAL: Duration = Duration::from_secs(10);
/// First retry delay after a failed publish; doubles up to [`DEFAULT_MAX_BACKOFF`].
pub const DEFAULT_MIN_BACKOFF: Duration = Duration::from_millis(50);
/// Longest retry delay.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How long the publisher lets a trickle of events gather before sending them, so that
/// a render's events go out in one burst (one wake-up of the publisher, one socket
/// write, one read by the broker) rather than one of each per event. On a busy 2-core
/// machine with the broker beside the service, publishing without it cost the renderer
/// load bench's p50 roughly twice as much (docs/benchmarks.md, "Renderer under load").
/// Only applies while fewer than [`LINGER_BELOW`] events are pending or in flight, and
/// never during shutdown.
pub const DEFAULT_PUBLISH_LINGER: Duration = Duration::from_millis(5);
/// Longest linger accepted: past it, events sit in the queue for no gain.
pub const MAX_PUBLISH_LINGER: Duration = Duration::from_secs(1);
/// Pending plus in-flight events at or above which the publisher sends without lingering
/// (a backlog already comes in bursts).
pub const LINGER_BELOW: usize = 64;

/// Size limits checked at the call, so an oversized event fails fast with a typed error
/// instead of being refused by the broker later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// A JSON blob (`resolved_facts_json`, `prompt_pack_json`, an event's payload).
    pub max_json_bytes: usize,
    /// Ids, hashes, keys, model names and other short strings.
    pub max_field_bytes: usize,
    /// An error message longer than this is truncated (not rejected: losing a variant
    /// result because its provider error was verbose would be worse).
    pub max_error_message_bytes: usize,
}

/// Default [`Limits::max_json_bytes`].
pub const DEFAULT_MAX_JSON_BYTES: usize = 64 * 1024;
/// Default [`Limits::max_field_bytes`].
pub const DEFAULT_MAX_FIELD_BYTES: usize = 1024;
/// Default [`Limits::max_error_message_bytes`].
pub const DEFAULT_MAX_ERROR_MESSAGE_BYTES: usize = 4 * 1024;

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_json_bytes: DEFAULT_MAX_JSON_BYTES,
            max_field_bytes: DEFAULT_MAX_FIELD_BYTES,
            max_error_message_bytes: DEFAULT_MAX_ERROR_MESSAGE_BYTES,
        }
    }
}

/// How to reach NATS. Shared by the SDK and the collector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatsConfig {
    /// One or more server URLs, comma-separated (`NATS_URL`).
    pub url: String,
    /// A `.creds` file (`NATS_CREDS`).
    pub creds_file: Option<PathBuf>,
    /// User name (`NATS_USER`), with [`NatsConfig::password`].
    pub user: Option<String>,
    /// Password (`NATS_PASSWORD`).
    pub password: Option<String>,
    /// Token (`NATS_TOKEN`).
    pub token: Option<String>,
    /// PEM file of the CA that signed the server's certificate (`NATS_TLS_CA`); setting
    /// it requires TLS.
    pub tls_ca_file: Option<PathBuf>,
    /// PEM client certificate (`NATS_TLS_CERT`), for servers that verify clients; with
    /// [`NatsConfig::tls_key_file`].
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of the client certificate (`NATS_TLS_KEY`).
    pub tls_key_file: Option<PathBuf>,
    /// Name shown in the server's connection list.
    pub connection_name: String,
}

impl Default for NatsConfig {
    fn default() -> Self {
        Self {
            url: DEFAULT_NATS_URL.to_owned(),
            creds_file: None,
            user: None,
            password: None,
            token: None,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            connection_name: "telemetry".to_owned(),
        }
    }
}

impl NatsConfig {
    /// The server URLs, split on commas.
    pub fn urls(&self) -> Vec<&str> {
        self.url.split(',').map(str::trim).collect()
    }

    /// Checks what can be checked without a network: URL syntax, that credentials
    /// are not contradictory, and that the TLS files exist.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let files = [
            ("NATS_TLS_CA", &self.tls_ca_file),
            ("NATS_TLS_CERT", &self.tls_cert_file),
            ("NATS_TLS_KEY", &self.tls_key_file),
            ("NATS_CREDS", &self.creds_file),
        ];
        for (setting, file) in files {
            if let Some(path) = file {
                if !path.is_file() {
                    return Err(ConfigError::new(
                        setting,
                        format!("{} is not a readable file", path.display()),
                    ));
                }
            }
        }
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some() {
            return Err(ConfigError::new(
                "NATS_TLS_CERT/NATS_TLS_KEY",
                "set both or neither",
            ));
        }
        for url in self.urls() {
            url.parse::<async_nats::ServerAddr>().map_err(|err| {
                ConfigError::new("NATS_URL", format!("{url:?} is not a NATS URL: {err}"))
            })?;
        }
        if self.user.is_some() != self.password.is_some() {
            return Err(ConfigError::new(
                "NATS_USER/NATS_PASSWORD",
                "set both or neither",
            ));
        }
        let methods = [
            self.creds_file.is_some(),
            self.user.is_some(),
            self.token.is_some(),
        ];
        if methods.iter().filter(|set| **set).count() > 1 {
            return Err(ConfigError::new(
                "NATS_CREDS/NATS_USER/NATS_TOKEN",
                "choose one authentication method",
            ));
        }
        Ok(())
    }
}

/// Everything [`crate::Telemetry::start`] needs.
#[derive(Debug, Clone)]
pub struct TelemetryConfig {
    /// Where the broker is.
    pub nats: NatsConfig,
    /// Subject prefix (`TELEMETRY_SUBJECT_PREFIX`).
    pub subject_prefix: String,
    /// Stream name (`TELEMETRY_STREAM`).
    pub stream: String,
    /// Create the stream when it is missing. Off where the producer's NATS user may
    /// only publish.
    pub ensure_stream: bool,
    /// Disk cap of the stream when this producer creates it
    /// (`TELEMETRY_STREAM_MAX_BYTES`, see [`DEFAULT_MAX_BYTES`]).
    pub stream_max_bytes: i64,
    /// Name of the service, carried in `ProducerStats` (e.g. `renderer`).
    pub service: String,
    /// See [`DEFAULT_QUEUE_CAPACITY`].
    pub queue_capacity: usize,
    /// See [`DEFAULT_QUEUE_MAX_BYTES`].
    pub queue_max_bytes: usize,
    /// See [`DEFAULT_MAX_IN_FLIGHT`].
    pub max_in_flight: usize,
    /// See [`DEFAULT_ACK_TIMEOUT`].
    pub ack_timeout: Duration,
    /// See [`DEFAULT_STATS_INTERVAL`].
    pub stats_interval: Duration,
    /// See [`DEFAULT_MIN_BACKOFF`].
    pub min_backoff: Duration,
    /// See [`DEFAULT_MAX_BACKOFF`].
    pub max_backoff: Duration,
    /// See [`DEFAULT_PUBLISH_LINGER`]; zero sends each event as soon as it is taken.
    pub publish_linger: Duration,
    /// Field size limits.
    pub limits: Limits,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            nats: NatsConfig::default(),
            subject_prefix: DEFAULT_PREFIX.to_owned(),
            stream: DEFAULT_STREAM.to_owned(),
            ensure_stream: true,
            stream_max_bytes: DEFAULT_MAX_BYTES,
            service: "telemetry".to_owned(),
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            queue_max_bytes: DEFAULT_QUEUE_MAX_BYTES,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            ack_timeout: DEFAULT_ACK_TIMEOUT,
            stats_interval: DEFAULT_STATS_INTERVAL,
            min_backoff: DEFAULT_MIN_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
            publish_linger: DEFAULT_PUBLISH_LINGER,
            limits: Limits::default(),
        }
    }
}

impl TelemetryConfig {
    /// Validates the settings and derives the subjects and stream definition.
    pub fn validate(&self) -> Result<(Subjects, StreamSpec), ConfigError> {
        self.nats.validate()?;
        let subjects = Subjects::new(&self.subject_prefix)
            .map_err(|err| ConfigError::new("TELEMETRY_SUBJECT_PREFIX", err.to_string()))?;
        validate_stream_name(&self.stream)
            .map_err(|reason| ConfigError::new("TELEMETRY_STREAM", reason))?;
        let positive = [
            ("TELEMETRY_QUEUE_CAPACITY", self.queue_capacity),
            ("TELEMETRY_QUEUE_MAX_BYTES", self.queue_max_bytes),
            ("TELEMETRY_MAX_IN_FLIGHT", self.max_in_flight),
        ];
        for (setting, value) in positive {
            if value == 0 {
                return Err(ConfigError::new(setting, "must be at least 1"));
            }
        }
        if self.max_in_flight > 1024 {
            return Err(ConfigError::new(
                "TELEMETRY_MAX_IN_FLIGHT",
                "at most 1024 (must stay under the NATS client's 2048-slot command buffer)",
            ));
        }
        if self.publish_linger > MAX_PUBLISH_LINGER {
            return Err(ConfigError::new(
                "TELEMETRY_PUBLISH_LINGER_MS",
                format!("at most {} ms", MAX_PUBLISH_LINGER.as_millis()),
            ));
        }
        if self.ack_timeout.is_zero() || self.stats_interval.is_zero() {
            return Err(ConfigError::new(
                "ack_timeout/stats_interval",
                "must be greater than zero",
            ));
        }
        let stream = StreamSpec::new(self.stream.clone(), subjects.clone())
            .with_max_bytes(self.stream_max_bytes)
            .map_err(|reason| ConfigError::new("TELEMETRY_STREAM_MAX_BYTES", reason))?;
        Ok((subjects, stream))
    }
}

/// NATS connection flags for binaries (feature `cli`), so the renderer and the
/// collector accept the same names.
#[cfg(feature = "cli")]
#[derive(Debug, Clone, clap::Args)]
pub struct NatsArgs {
    /// NATS server URL(s), comma-separated.
    #[arg(long = "nats-url", env = "NATS_URL", default_value = DEFAULT_NATS_URL)]
    pub nats_url: String,
    /// NATS credentials file (.creds).
    #[arg(long = "nats-creds", env = "NATS_CREDS")]
    pub nats_creds: Option<PathBuf>,
    /// NATS user name (with --nats-password).
    #[arg(long = "nats-user", env = "NATS_USER")]
    pub nats_user: Option<String>,
    /// NATS password.
    #[arg(long = "nats-password", env = "NATS_PASSWORD", hide_env_values = true)]
    pub nats_password: Option<String>,
    /// NATS token.
    #[arg(long = "nats-token", env = "NATS_TOKEN", hide_env_values = true)]
    pub nats_token: Option<String>,
    /// PEM CA file for a TLS connection to NATS (requires TLS).
    #[arg(long = "nats-tls-ca", env = "NATS_TLS_CA")]
    pub nats_tls_ca: Option<PathBuf>,
    /// PEM client certificate for NATS servers that verify clients (with --nats-tls-key).
    #[arg(long = "nats-tls-cert", env = "NATS_TLS_CERT")]
    pub nats_tls_cert: Option<PathBuf>,
    /// PEM private key of the client certificate.
    #[arg(long = "nats-tls-key", env = "NATS_TLS_KEY")]
    pub nats_tls_key: Option<PathBuf>,
    /// Subject prefix of the telemetry subjects.
    #[arg(long = "subject-prefix", env = "TELEMETRY_SUBJECT_PREFIX", default_value = DEFAULT_PREFIX)]
    pub subject_prefix: String,
    /// JetStream stream name.
    #[arg(long = "stream", env = "TELEMETRY_STREAM", default_value = DEFAULT_STREAM)]
    pub stream: String,
    /// Disk cap of the stream, in bytes, used when this process creates it (an
    /// existing stream keeps its own limits).
    #[arg(long = "stream-max-bytes", env = "TELEMETRY_STREAM_MAX_BYTES", default_value_t = DEFAULT_MAX_BYTES)]
    pub stream_max_bytes: i64,
}

#[cfg(feature = "cli")]
impl NatsArgs {
    /// The connection settings, named `connection_name` on the server.
    pub fn nats_config(&self, connection_name: &str) -> NatsConfig {
        NatsConfig {
            url: self.nats_url.clone(),
            creds_file: self.nats_creds.clone(),
            user: self.nats_user.clone(),
            password: self.nats_password.clone(),
            token: self.nats_token.clone(),
            tls_ca_file: self.nats_tls_ca.clone(),
            tls_cert_file: self.nats_tls_cert.clone(),
            tls_key_file: self.nats_tls_key.clone(),
            connection_name: connection_name.to_owned(),
        }
    }
}

/// An error and its causes on one line, each cause once, for a binary's `main` (the
/// renderer's and the collector's). Driver errors (sqlx, rustls, io) often repeat
/// their source in their own message, so `{:#}` would print the same cause several
/// times over.
#[cfg(feature = "cli")]
pub fn error_line(err: &(dyn std::error::Error + 'static)) -> String {
    let mut line = String::new();
    let mut cause = Some(err);
    while let Some(err) = cause {
        let text = err.to_string();
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
        cause = err.source();
    }
    line
}

/// How a binary writes its log lines (`--log-format`, `LOG_FORMAT`), the same for the
/// renderer and the collector.
#[cfg(feature = "cli")]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Whether a binary's text log lines carry ANSI colour codes: only when the stream it
/// logs to is a terminal (`is_terminal`, from [`std::io::IsTerminal`]), and never when
/// `NO_COLOR` (`no_color`, from `std::env::var_os("NO_COLOR")`) is set to a non-empty
/// value (<https://no-color.org>). Escape sequences in a log file, a pipe or a journal
/// are noise that `grep` trips over. The same for the renderer and the collector.
#[cfg(feature = "cli")]
pub fn log_colour(is_terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    is_terminal && no_color.is_none_or(|value| value.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "cli")]
    #[test]
    fn log_colour_only_on_a_terminal_without_no_color() {
        use std::ffi::OsString;
        // A terminal, NO_COLOR unset or empty (an empty value does not count).
        assert!(log_colour(true, None));
        assert!(log_colour(true, Some(OsString::new())));
        // NO_COLOR with any non-empty value, even "0" or "false".
        for value in ["1", "0", "false", "yes"] {
            assert!(!log_colour(true, Some(value.into())), "NO_COLOR={value}");
        }
        // A file or a pipe: never, whatever NO_COLOR says.
        assert!(!log_colour(false, None));
        assert!(!log_colour(false, Some(OsString::new())));
        assert!(!log_colour(false, Some("1".into())));
    }

    #[test]
    fn defaults_are_valid() {
        let (subjects, stream) = TelemetryConfig::default().validate().unwrap();
        assert_eq!(subjects.prefix(), "telemetry");
        assert_eq!(stream.name, "TELEMETRY");
    }

    #[test]
    fn bad_values_name_the_setting() {
        let cases: Vec<(TelemetryConfig, &str)> = vec![
            (
                TelemetryConfig {
                    subject_prefix: "a b".into(),
                    ..Default::default()
                },
                "TELEMETRY_SUBJECT_PREFIX",
            ),
            (
                TelemetryConfig {
                    stream: "a.b".into(),
                    ..Default::default()
                },
                "TELEMETRY_STREAM",
            ),
            (
                TelemetryConfig {
                    stream_max_bytes: 1000,
                    ..Default::default()
                },
                "TELEMETRY_STREAM_MAX_BYTES",
            ),
            (
                TelemetryConfig {
                    queue_capacity: 0,
                    ..Default::default()
                },
                "TELEMETRY_QUEUE_CAPACITY",
            ),
            (
                TelemetryConfig {
                    max_in_flight: 5000,
                    ..Default::default()
                },
                "TELEMETRY_MAX_IN_FLIGHT",
            ),
            (
                TelemetryConfig {
                    nats: NatsConfig {
                        url: "nats://host:notaport".into(),
                        ..Default::default()
                    },
                    ..Default::default()
                },
                "NATS_URL",
            ),
            (
                TelemetryConfig {
                    nats: NatsConfig {
                        user: Some("u".into()),
                        ..Default::default()
                    },
                    ..Default::default()
                },
                "NATS_USER/NATS_PASSWORD",
            ),
        ];
        let missing = || Some(PathBuf::from("/nonexistent/ca.pem"));
        let cases = cases.into_iter().chain([
            (
                TelemetryConfig {
                    nats: NatsConfig {
                        tls_ca_file: missing(),
                        ..Default::default()
                    },
                    ..Default::default()
                },
                "NATS_TLS_CA",
            ),
            (
                TelemetryConfig {
                    nats: NatsConfig {
                        tls_key_file: missing(),
                        ..Default::default()
                    },
                    ..Default::default()
                },
                "NATS_TLS_KEY",
            ),
        ]);
        for (config, setting) in cases {
            let err = config.validate().unwrap_err();
            assert_eq!(err.setting, setting, "{err}");
            assert!(err.to_string().starts_with("invalid telemetry setting"));
        }
    }
}
