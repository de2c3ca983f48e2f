//! The JetStream stream both sides agree on.
//!
//! The SDK creates it if missing (so a renderer can start before any collector), and
//! the collector does the same before attaching its consumer. Both call
//! [`StreamSpec::config`], so the definition lives in one place.

use std::time::Duration;

use async_nats::jetstream::context::{CreateStreamError, CreateStreamErrorKind};
use async_nats::jetstream::stream::{Config, DiscardPolicy, RetentionPolicy, StorageType};
use async_nats::jetstream::ErrorCode;

use crate::subjects::Subjects;

/// Default stream name (`TELEMETRY_STREAM`).
pub const DEFAULT_STREAM: &str = "TELEMETRY";
/// How long the broker remembers a `Nats-Msg-Id`: a retried publish within this window
/// is stored once. It must outlast the SDK's longest retry of one event while the
/// broker is reachable; two minutes is the broker's own default.
pub const DEFAULT_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// How long messages stay in the stream: long enough to replay a database after an
/// outage or rebuild one from scratch.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Cap on the stream's disk use (`TELEMETRY_STREAM_MAX_BYTES`); the oldest messages go
/// first when it is reached. JetStream reserves it in full when the stream is created,
/// and a server whose storage limit was left to its default (75% of the disk's free
/// space at its start) refuses a stream it cannot reserve: on a disk with less than
/// ~11 GB free, lower this knob or give the server a `max_file_store`.
pub const DEFAULT_MAX_BYTES: i64 = 8 * 1024 * 1024 * 1024;
/// Smallest `TELEMETRY_STREAM_MAX_BYTES` accepted: one largest message.
pub const MIN_MAX_BYTES: i64 = DEFAULT_MAX_MESSAGE_SIZE as i64;
/// Largest message the stream accepts. The SDK's own payload limits keep envelopes
/// far below it.
pub const DEFAULT_MAX_MESSAGE_SIZE: i32 = 1024 * 1024;

/// Most replicas JetStream allows for a stream.
pub const MAX_REPLICAS: usize = 5;

/// Name, subjects and limits of the telemetry stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSpec {
    /// Stream name; tests use a random one.
    pub name: String,
    /// Subjects bound by the stream: `{prefix}.v1.>`.
    pub subjects: Subjects,
    /// See [`DEFAULT_DUPLICATE_WINDOW`].
    pub duplicate_window: Duration,
    /// See [`DEFAULT_MAX_AGE`].
    pub max_age: Duration,
    /// See [`DEFAULT_MAX_BYTES`].
    pub max_bytes: i64,
    /// Replicas (1 on one server, 3 on a cluster).
    pub replicas: usize,
}

impl StreamSpec {
    /// The default limits for a stream `name` over `subjects`.
    pub fn new(name: impl Into<String>, subjects: Subjects) -> Self {
        Self {
            name: name.into(),
            subjects,
            duplicate_window: DEFAULT_DUPLICATE_WINDOW,
            max_age: DEFAULT_MAX_AGE,
            max_bytes: DEFAULT_MAX_BYTES,
            replicas: 1,
        }
    }

    /// The same stream capped at `max_bytes` (`TELEMETRY_STREAM_MAX_BYTES`), which must
    /// hold at least one largest message.
    pub fn with_max_bytes(mut self, max_bytes: i64) -> Result<Self, String> {
        if max_bytes < MIN_MAX_BYTES {
            return Err(format!(
                "{max_bytes} is less than one largest message ({MIN_MAX_BYTES} bytes)"
            ));
        }
        self.max_bytes = max_bytes;
        Ok(self)
    }

    /// The same stream kept in `replicas` copies (`TELEMETRY_STREAM_REPLICAS`, 1 to
    /// [`MAX_REPLICAS`]).
    pub fn with_replicas(mut self, replicas: usize) -> Result<Self, String> {
        if !(1..=MAX_REPLICAS).contains(&replicas) {
            return Err(format!("{replicas} is not between 1 and {MAX_REPLICAS}"));
        }
        self.replicas = replicas;
        Ok(self)
    }

    /// The JetStream configuration: file storage, limits retention, discard old.
    pub fn config(&self) -> Config {
        Config {
            name: self.name.clone(),
            subjects: vec![self.subjects.wildcard()],
            storage: StorageType::File,
            retention: RetentionPolicy::Limits,
            discard: DiscardPolicy::Old,
            duplicate_window: self.duplicate_window,
            max_age: self.max_age,
            max_bytes: self.max_bytes,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            num_replicas: self.replicas,
            description: Some("render telemetry (telemetry.v1 envelopes)".to_owned()),
            ..Default::default()
        }
    }
}

/// One setting where an existing stream differs from the configured [`StreamSpec`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    /// The stream setting (`subjects`, `storage`, `max_bytes`, ...).
    pub field: &'static str,
    /// What the broker has.
    pub existing: String,
    /// What the settings ask for.
    pub configured: String,
    /// Whether an update can change it; the broker refuses to change a stream's
    /// storage or retention (delete and recreate it instead).
    pub updatable: bool,
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} (configured {})",
            self.field, self.existing, self.configured
        )?;
        if !self.updatable {
            f.write_str(", which an update cannot change")?;
        }
        Ok(())
    }
}

impl StreamSpec {
    /// Where `existing` (the broker's configuration of this stream) differs from
    /// [`StreamSpec::config`], in the settings this project manages. Empty when they
    /// agree. The description and the broker's own additions are not compared.
    pub fn differences(&self, existing: &Config) -> Vec<Difference> {
        let wanted = self.config();
        let mut out = Vec::new();
        let mut compare = |field, existing: String, configured: String, updatable| {
            if existing != configured {
                out.push(Difference {
                    field,
                    existing,
                    configured,
                    updatable,
                });
            }
        };
        compare(
            "subjects",
            existing.subjects.join(","),
            wanted.subjects.join(","),
            true,
        );
        compare(
            "storage",
            format!("{:?}", existing.storage).to_lowercase(),
            format!("{:?}", wanted.storage).to_lowercase(),
            false,
        );
        compare(
            "retention",
            format!("{:?}", existing.retention).to_lowercase(),
            format!("{:?}", wanted.retention).to_lowercase(),
            false,
        );
        compare(
            "discard",
            format!("{:?}", existing.discard).to_lowercase(),
            format!("{:?}", wanted.discard).to_lowercase(),
            true,
        );
        compare(
            "duplicate_window",
            format!("{:?}", existing.duplicate_window),
            format!("{:?}", wanted.duplicate_window),
            true,
        );
        compare(
            "max_age",
            format!("{:?}", existing.max_age),
            format!("{:?}", wanted.max_age),
            true,
        );
        compare(
            "max_bytes",
            existing.max_bytes.to_string(),
            wanted.max_bytes.to_string(),
            true,
        );
        compare(
            "max_message_size",
            existing.max_message_size.to_string(),
            wanted.max_message_size.to_string(),
            true,
        );
        // The broker reports 0 for "the default", which is one copy.
        compare(
            "replicas",
            existing.num_replicas.max(1).to_string(),
            wanted.num_replicas.max(1).to_string(),
            true,
        );
        out
    }
}

/// One line for a log or a terminal: `subjects: a.v1.> (configured b.v1.>); ...`.
pub fn describe_differences(differences: &[Difference]) -> String {
    differences
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// What to do when creating the stream failed with `error`: the broker's own words
/// ("insufficient storage resources available", JetStream error 10047) do not say
/// which setting to change.
pub fn create_error_hint(error: &CreateStreamError) -> &'static str {
    match error.kind() {
        CreateStreamErrorKind::JetStream(err)
            if err.error_code() == ErrorCode::STORAGE_RESOURCES_EXCEEDED =>
        {
            " (the broker cannot reserve TELEMETRY_STREAM_MAX_BYTES: lower it, or raise the \
             server's jetstream max_file_store)"
        }
        _ => "",
    }
}

/// Whether a JetStream API error may pass by itself, so the request is worth retrying:
/// JetStream without a quorum or meta leader (a cluster restarting, or losing two of
/// three nodes), no peers to place the replicas on yet, a leader changing, or the
/// store directory race of a server whose last stream was just deleted. Anything else
/// (the stream refused for its settings, subjects overlapping another stream's, a
/// permission) is a configuration to fix.
pub fn is_transient(error: &async_nats::jetstream::Error) -> bool {
    error.code() == 503
        || error.code() == 408
        || [
            ErrorCode::CLUSTER_NOT_AVAILABLE,
            ErrorCode::CLUSTER_NO_PEERS,
            ErrorCode::CLUSTER_NOT_LEADER,
            ErrorCode::STREAM_CREATE,
            ErrorCode::STREAM_STORE_FAILED,
        ]
        .contains(&error.error_code())
}

/// Checks a stream name the way the broker would, so a bad `TELEMETRY_STREAM` fails at
/// start-up with a reason instead of at the first publish.
pub fn validate_stream_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name
            .chars()
            .any(|c| c.is_whitespace() || matches!(c, '.' | '*' | '>' | '/' | '\\'))
    {
        return Err(format!(
            "invalid stream name {name:?}: no spaces, '.', '*', '>', '/' or '\\'"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_binds_every_subject_of_its_prefix_on_disk() {
        let spec = StreamSpec::new("T", Subjects::new("p").unwrap());
        let config = spec.config();
        assert_eq!(config.subjects, vec!["p.v1.>".to_owned()]);
        assert_eq!(config.storage, StorageType::File);
        assert_eq!(config.duplicate_window, DEFAULT_DUPLICATE_WINDOW);
        assert_eq!(config.max_age, DEFAULT_MAX_AGE);
    }

    #[test]
    fn differences_name_each_setting_that_differs() {
        let spec = StreamSpec::new("T", Subjects::new("p").unwrap());
        assert!(spec.differences(&spec.config()).is_empty());
        let mut existing = spec.config();
        existing.num_replicas = 0;
        assert!(spec.differences(&existing).is_empty(), "0 means one copy");
        existing.subjects = vec!["q.v1.>".into()];
        existing.storage = StorageType::Memory;
        existing.duplicate_window = Duration::from_secs(5);
        existing.max_message_size = 10;
        let differences = spec.differences(&existing);
        let fields: Vec<_> = differences.iter().map(|d| d.field).collect();
        assert_eq!(
            fields,
            [
                "subjects",
                "storage",
                "duplicate_window",
                "max_message_size"
            ]
        );
        let line = describe_differences(&differences);
        assert!(
            line.contains("subjects: q.v1.> (configured p.v1.>)"),
            "{line}"
        );
        assert!(
            line.contains("storage: memory (configured file), which an update cannot change"),
            "{line}"
        );
        let three = spec.clone().with_replicas(3).unwrap();
        let differences = three.differences(&spec.config());
        assert_eq!(differences.len(), 1);
        assert_eq!(differences[0].to_string(), "replicas: 1 (configured 3)");
        assert!(spec.clone().with_replicas(0).is_err());
        assert!(spec.with_replicas(6).is_err());
    }

    #[test]
    fn stream_names_are_checked() {
        assert!(validate_stream_name("TELEMETRY").is_ok());
        assert!(validate_stream_name("a.b").is_err());
        assert!(validate_stream_name("").is_err());
    }

    #[test]
    fn stream_max_bytes_hold_at_least_one_message() {
        let spec = || StreamSpec::new("T", Subjects::new("p").unwrap());
        assert!(spec().with_max_bytes(DEFAULT_MAX_BYTES).is_ok());
        let smallest = spec().with_max_bytes(MIN_MAX_BYTES).unwrap();
        assert_eq!(smallest.config().max_bytes, MIN_MAX_BYTES);
        let err = spec().with_max_bytes(MIN_MAX_BYTES - 1).unwrap_err();
        assert!(err.contains("one largest message"), "{err}");
        assert!(spec().with_max_bytes(0).is_err());
    }
}
