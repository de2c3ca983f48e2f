//! Settings of the SDK, each bound with a named default.

use std::time::Duration;

use telemetry_proto::stream::{validate_stream_name, DEFAULT_MAX_BYTES, DEFAULT_STREAM};
use telemetry_proto::subjects::DEFAULT_PREFIX;
use telemetry_proto::{StreamSpec, Subjects};

use service_kit::{ConfigError, NatsConfig};
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
/// Attempts for an error the broker gave (not a timeout or a lost connection) before
/// the event is dropped as `broker_rejected`. Transient errors retry without end.
pub const MAX_REJECTED_ATTEMPTS: u32 = 10;
/// Part of the shutdown deadline kept for the final `ProducerStats`.
pub const FINAL_STATS_RESERVE: Duration = Duration::from_millis(200);

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
    /// Copies of the stream when this producer creates it
    /// (`TELEMETRY_STREAM_REPLICAS`; 3 on a three-node cluster).
    pub stream_replicas: usize,
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
            stream_replicas: 1,
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
            .map_err(|reason| ConfigError::new("TELEMETRY_STREAM_MAX_BYTES", reason))?
            .with_replicas(self.stream_replicas)
            .map_err(|reason| ConfigError::new("TELEMETRY_STREAM_REPLICAS", reason))?;
        Ok((subjects, stream))
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

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
            assert_eq!(
                err.to_string(),
                format!("invalid setting {setting}: {}", err.reason)
            );
        }
    }
}
