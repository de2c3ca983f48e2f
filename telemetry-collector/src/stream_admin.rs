//! `telemetry-collector stream info | create | update [--dry-run]`: the telemetry
//! stream set up and kept to the configured spec (`TELEMETRY_STREAM`,
//! `TELEMETRY_SUBJECT_PREFIX`, `TELEMETRY_STREAM_MAX_BYTES`, `TELEMETRY_STREAM_REPLICAS`)
//! with this binary alone, so an operator never needs the `nats` CLI (not packaged for
//! Debian) to get a replicated stream.
//!
//! - `info`: the stream's settings, state and cluster (leader, each replica's lag),
//!   and how it differs from the configured spec.
//! - `create`: creates the stream to the spec when it is missing; an existing one is
//!   left alone and its differences printed.
//! - `update`: applies the spec to an existing stream, after printing what changes;
//!   `--dry-run` only prints. The broker cannot change a stream's storage or retention:
//!   such a difference is refused, naming it, and nothing is changed.
//!
//! The services themselves only ever create a missing stream and warn when an existing
//! one differs ([`crate::ingest::warn_differences`]): changing a shared stream is an
//! operator's decision, taken here.

use std::fmt::Write as _;
use std::time::Duration;

use async_nats::jetstream::context::GetStreamErrorKind;
use async_nats::jetstream::{self, stream, ErrorCode};
use service_kit::cli::NatsArgs;
use telemetry_proto::stream::{create_error_hint, describe_differences, Difference};
use telemetry_proto::StreamSpec;

use crate::config::{ConfigError, Settings, DEFAULT_DATABASE_URL};

/// `stream` flags.
#[derive(Debug, clap::Args)]
pub struct StreamArgs {
    /// What to do with the stream.
    #[command(subcommand)]
    pub action: StreamAction,
}

/// `stream` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum StreamAction {
    /// Show the stream's settings, state and cluster, and how it differs from the
    /// configured spec.
    Info(StreamTarget),
    /// Create the stream to the configured spec if it is missing.
    Create(StreamTarget),
    /// Apply the configured spec to the existing stream (replicas, limits, subjects).
    Update(UpdateArgs),
}

/// Where the stream is and what it should be.
#[derive(Debug, clap::Args)]
pub struct StreamTarget {
    /// NATS connection, subject prefix, stream name and limits.
    #[command(flatten)]
    pub nats: NatsArgs,
}

/// `stream update` flags.
#[derive(Debug, clap::Args)]
pub struct UpdateArgs {
    /// NATS connection, subject prefix, stream name and limits.
    #[command(flatten)]
    pub nats: NatsArgs,
    /// Print what would change, change nothing.
    #[arg(long = "dry-run")]
    pub dry_run: bool,
}

/// Why a `stream` command failed.
#[derive(Debug, thiserror::Error)]
pub enum StreamAdminError {
    /// A setting is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// NATS could not be reached.
    #[error("NATS_URL: {0}")]
    Connect(#[from] service_kit::nats::ConnectError),
    /// The stream is not there (`info`, `update`).
    #[error("stream {stream} does not exist: `telemetry-collector stream create` makes it")]
    Missing {
        /// Stream name.
        stream: String,
    },
    /// The broker refused or did not answer.
    #[error("stream {stream}: cannot {action}: {reason}")]
    Broker {
        /// Stream name.
        stream: String,
        /// What was asked.
        action: &'static str,
        /// The broker's answer.
        reason: String,
    },
    /// The spec asks for a change the broker cannot make in place.
    #[error(
        "stream {stream}: an update cannot change {fields}; nothing was changed (to change \
         them, delete and recreate the stream, then `telemetry-collector replay` from a backup \
         of its data if it must be kept)"
    )]
    NotUpdatable {
        /// Stream name.
        stream: String,
        /// The settings, comma-separated.
        fields: String,
    },
}

/// Runs a `stream` subcommand, writing its report to `out`.
pub async fn run(args: &StreamArgs, out: &mut String) -> Result<(), StreamAdminError> {
    let (nats, dry_run) = match &args.action {
        StreamAction::Info(target) | StreamAction::Create(target) => (&target.nats, false),
        StreamAction::Update(update) => (&update.nats, update.dry_run),
    };
    let spec = configured_spec(nats)?;
    let client =
        service_kit::nats::connect(&nats.nats_config("telemetry-collector-stream")).await?;
    let js = jetstream::new(client.clone());
    let result = match &args.action {
        StreamAction::Info(_) => info(&js, &spec, out).await,
        StreamAction::Create(_) => create(&js, &spec, out).await,
        StreamAction::Update(_) => update(&js, &spec, dry_run, out).await,
    };
    let _ = client.flush().await;
    result
}

/// The spec the settings describe, checked as the services check it.
pub fn configured_spec(nats: &NatsArgs) -> Result<StreamSpec, ConfigError> {
    let mut settings = Settings::new(
        &nats.nats_url,
        &nats.subject_prefix,
        &nats.stream,
        DEFAULT_DATABASE_URL,
    );
    settings.nats = nats.nats_config("telemetry-collector-stream");
    settings.stream_max_bytes = nats.stream_max_bytes;
    settings.stream_replicas = nats.stream_replicas;
    Ok(settings.validate()?.1)
}

/// The stream's current info; [`StreamAdminError::Missing`] when it does not exist.
async fn required(
    js: &jetstream::Context,
    spec: &StreamSpec,
) -> Result<stream::Info, StreamAdminError> {
    existing(js, spec)
        .await?
        .ok_or_else(|| StreamAdminError::Missing {
            stream: spec.name.clone(),
        })
}

/// The stream's current info, `None` when it does not exist.
async fn existing(
    js: &jetstream::Context,
    spec: &StreamSpec,
) -> Result<Option<stream::Info>, StreamAdminError> {
    match js.get_stream(&spec.name).await {
        Ok(stream) => Ok(Some(stream.cached_info().clone())),
        Err(err) => match err.kind() {
            GetStreamErrorKind::JetStream(js_err)
                if js_err.error_code() == ErrorCode::STREAM_NOT_FOUND =>
            {
                Ok(None)
            }
            _ => Err(StreamAdminError::Broker {
                stream: spec.name.clone(),
                action: "read it",
                reason: err.to_string(),
            }),
        },
    }
}

async fn info(
    js: &jetstream::Context,
    spec: &StreamSpec,
    out: &mut String,
) -> Result<(), StreamAdminError> {
    let info = required(js, spec).await?;
    describe(&info, out);
    report_differences(&spec.differences(&info.config), out);
    Ok(())
}

async fn create(
    js: &jetstream::Context,
    spec: &StreamSpec,
    out: &mut String,
) -> Result<(), StreamAdminError> {
    if let Some(info) = existing(js, spec).await? {
        let _ = writeln!(out, "stream {} already exists; left as it is", spec.name);
        describe(&info, out);
        report_differences(&spec.differences(&info.config), out);
        return Ok(());
    }
    let stream = js
        .create_stream(spec.config())
        .await
        .map_err(|err| StreamAdminError::Broker {
            stream: spec.name.clone(),
            action: "create it",
            reason: format!("{err}{}", create_error_hint(&err)),
        })?;
    let _ = writeln!(out, "created:");
    describe(stream.cached_info(), out);
    Ok(())
}

async fn update(
    js: &jetstream::Context,
    spec: &StreamSpec,
    dry_run: bool,
    out: &mut String,
) -> Result<(), StreamAdminError> {
    let info = required(js, spec).await?;
    let differences = spec.differences(&info.config);
    if differences.is_empty() {
        let _ = writeln!(
            out,
            "stream {} already matches the configured spec; nothing to change",
            spec.name
        );
        return Ok(());
    }
    let fixed: Vec<&Difference> = differences.iter().filter(|d| !d.updatable).collect();
    let _ = writeln!(
        out,
        "stream {}: {} change{}:",
        spec.name,
        if dry_run { "would make" } else { "making" },
        if differences.len() == 1 { "" } else { "s" }
    );
    for difference in &differences {
        let _ = writeln!(
            out,
            "  {:<17} {} -> {}",
            difference.field, difference.existing, difference.configured
        );
    }
    if !fixed.is_empty() {
        return Err(StreamAdminError::NotUpdatable {
            stream: spec.name.clone(),
            fields: fixed.iter().map(|d| d.field).collect::<Vec<_>>().join(", "),
        });
    }
    if dry_run {
        let _ = writeln!(out, "dry run: nothing changed");
        return Ok(());
    }
    // The existing description and the broker's own additions (placement, sources)
    // are kept; only the managed settings change.
    let mut config = info.config.clone();
    let wanted = spec.config();
    config.subjects = wanted.subjects;
    config.discard = wanted.discard;
    config.duplicate_window = wanted.duplicate_window;
    config.max_age = wanted.max_age;
    config.max_bytes = wanted.max_bytes;
    config.max_message_size = wanted.max_message_size;
    config.num_replicas = wanted.num_replicas;
    let updated = js
        .update_stream(config)
        .await
        .map_err(|err| StreamAdminError::Broker {
            stream: spec.name.clone(),
            action: "update it",
            reason: format!("{err}{}", create_error_hint(&err)),
        })?;
    let _ = writeln!(out, "updated:");
    describe(&updated, out);
    let left = spec.differences(&updated.config);
    if !left.is_empty() {
        // The broker answered but kept something (an older server ignoring a field).
        return Err(StreamAdminError::Broker {
            stream: spec.name.clone(),
            action: "apply every setting",
            reason: format!("it still differs: {}", describe_differences(&left)),
        });
    }
    Ok(())
}

/// The settings, state and cluster of a stream, one per line.
fn describe(info: &stream::Info, out: &mut String) {
    let config = &info.config;
    let state = &info.state;
    let _ = writeln!(out, "stream {}", config.name);
    let mut line = |label: &str, value: String| {
        let _ = writeln!(out, "  {label:<17} {value}");
    };
    line("subjects", config.subjects.join(", "));
    line("storage", format!("{:?}", config.storage).to_lowercase());
    line(
        "retention",
        format!(
            "{} (discard {})",
            format!("{:?}", config.retention).to_lowercase(),
            format!("{:?}", config.discard).to_lowercase()
        ),
    );
    line("replicas", config.num_replicas.max(1).to_string());
    line(
        "max_bytes",
        format!("{} ({})", config.max_bytes, human_bytes(config.max_bytes)),
    );
    line("max_age", human_duration(config.max_age));
    line("max_message_size", config.max_message_size.to_string());
    line("duplicate_window", human_duration(config.duplicate_window));
    line(
        "messages",
        format!(
            "{} ({}), sequences {}..{}",
            state.messages,
            human_bytes(state.bytes as i64),
            state.first_sequence,
            state.last_sequence
        ),
    );
    line("consumers", state.consumer_count.to_string());
    match &info.cluster {
        Some(cluster) => {
            line(
                "cluster",
                format!(
                    "{} (leader {})",
                    cluster.name.as_deref().unwrap_or("-"),
                    cluster
                        .leader
                        .as_deref()
                        .unwrap_or("NONE: electing one, or no quorum")
                ),
            );
            for peer in &cluster.replicas {
                let state = if peer.offline {
                    "OFFLINE".to_owned()
                } else if peer.current {
                    "current".to_owned()
                } else {
                    format!("catching up, {} behind", peer.lag.unwrap_or(0))
                };
                let _ = writeln!(
                    out,
                    "    {:<15} {state}, seen {:.1}s ago",
                    peer.name,
                    peer.active.as_secs_f64()
                );
            }
        }
        None => line("cluster", "none (a single server)".to_owned()),
    }
}

fn report_differences(differences: &[Difference], out: &mut String) {
    if differences.is_empty() {
        let _ = writeln!(out, "matches the configured spec");
        return;
    }
    let _ = writeln!(out, "differs from the configured spec:");
    for difference in differences {
        let _ = writeln!(out, "  {difference}");
    }
    let _ = writeln!(
        out,
        "`telemetry-collector stream update --dry-run` shows the change, without \
         --dry-run applies it"
    );
}

fn human_bytes(bytes: i64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    if bytes < 0 {
        return "unlimited".to_owned();
    }
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn human_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    if duration.is_zero() {
        "0s (unlimited)".to_owned()
    } else if secs == 0 {
        format!("{}ms", duration.as_millis())
    } else if secs.is_multiple_of(86_400) {
        format!("{}d", secs / 86_400)
    } else if secs.is_multiple_of(3_600) {
        format!("{}h", secs / 3_600)
    } else if secs.is_multiple_of(60) {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_read_as_an_operator_writes_them() {
        assert_eq!(human_bytes(8 * 1024 * 1024 * 1024), "8.0 GiB");
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(-1), "unlimited");
        assert_eq!(human_duration(Duration::from_secs(7 * 86_400)), "7d");
        assert_eq!(human_duration(Duration::from_secs(120)), "2m");
        assert_eq!(human_duration(Duration::from_secs(90)), "90s");
        assert_eq!(human_duration(Duration::from_millis(200)), "200ms");
    }
}
