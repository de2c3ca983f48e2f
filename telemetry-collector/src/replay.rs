//! `telemetry-collector replay [--from-start | --from-seq N | --from-time RFC3339]`:
//! rebuild a database from what the stream still holds.
//!
//! An ephemeral ordered consumer (no acks, no durable state: the collectors' durable
//! consumer is not touched, and the server deletes it when replay ends) reads the stream
//! from the chosen point up to the last sequence the stream had when replay started, so
//! it ends even while producers keep publishing. Batches go through the same parse edge
//! and the same one-transaction [`Store::write`] as live ingest, so replaying into an
//! empty database gives the rows live ingest gave, and replaying into a live database
//! changes nothing (writes are idempotent). Only `received_at` (when this process wrote
//! the row) differs from live ingest. Progress goes to stderr (indicatif).

use std::time::Duration;

use async_nats::jetstream::consumer::{pull::OrderedConfig, DeliverPolicy};
use async_nats::jetstream::{self, Message};
use bytes::Bytes;
use futures::StreamExt as _;
use indicatif::{ProgressBar, ProgressStyle};
use service_kit::cli::NatsArgs;
use service_kit::{now_ms, ExposeSecret as _};
use telemetry_proto::Subjects;

use crate::config::{DatabaseArgs, DEFAULT_BATCH_SIZE, MAX_BATCH_SIZE};
use crate::domain::{self, Parsed};
use crate::store::{self, Batch, Store, StoreError};

/// How long replay waits for the next message before it gives up (the stream or the
/// server went away).
pub const REPLAY_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a partial batch waits for more messages before it is written.
pub const REPLAY_LINGER: Duration = Duration::from_millis(50);

/// Where replay starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// The oldest message the stream holds.
    Start,
    /// This stream sequence (or the next one the stream still holds).
    Seq(u64),
    /// The first message stored at or after this time.
    Time(time::OffsetDateTime),
}

impl StartAt {
    fn policy(self) -> DeliverPolicy {
        match self {
            StartAt::Start => DeliverPolicy::All,
            StartAt::Seq(start_sequence) => DeliverPolicy::ByStartSequence { start_sequence },
            StartAt::Time(start_time) => DeliverPolicy::ByStartTime { start_time },
        }
    }
}

/// What a replay wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Messages read from the stream.
    pub messages: u64,
    /// Envelopes stored for the first time.
    pub stored: u64,
    /// Envelopes the database already held.
    pub duplicates: u64,
    /// Dead letters stored for the first time.
    pub dead_letters: u64,
    /// Stream sequence of the last message written (0 when none).
    pub last_seq: u64,
}

/// Why a replay stopped early.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// A setting is wrong.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// NATS could not be reached.
    #[error("NATS_URL: {0}")]
    Connect(#[from] service_kit::nats::ConnectError),
    /// The stream or the consumer could not be read.
    #[error("stream {stream}: {reason}")]
    Stream {
        /// Stream name.
        stream: String,
        /// Why.
        reason: String,
    },
    /// No message arrived for [`REPLAY_IDLE_TIMEOUT`] although more were expected.
    #[error("no message for {REPLAY_IDLE_TIMEOUT:?} after sequence {after}; resume with --from-seq {next}", next = after + 1)]
    Idle {
        /// Last sequence written.
        after: u64,
    },
    /// The database failed; everything up to `after` is written.
    #[error("DATABASE_URL: {source}; written up to sequence {after}, resume with --from-seq {next}", next = after + 1)]
    Store {
        /// Last sequence written.
        after: u64,
        /// Why.
        source: StoreError,
    },
}

/// Replays `stream` from `start` into `store` in batches of `batch_size`.
pub async fn replay(
    js: &jetstream::Context,
    stream: &str,
    subjects: &Subjects,
    store: &dyn Store,
    start: StartAt,
    batch_size: usize,
    progress: &ProgressBar,
) -> Result<ReplayReport, ReplayError> {
    let stream_err = |reason: String| ReplayError::Stream {
        stream: stream.to_owned(),
        reason,
    };
    let mut handle = js
        .get_stream(stream)
        .await
        .map_err(|err| stream_err(err.to_string()))?;
    let state = handle
        .info()
        .await
        .map_err(|err| stream_err(err.to_string()))?
        .state
        .clone();
    let mut report = ReplayReport::default();
    let last = state.last_sequence;
    if state.messages == 0 || matches!(start, StartAt::Seq(seq) if seq > last) {
        return Ok(report);
    }
    let mut consumer = handle
        .create_consumer(OrderedConfig {
            deliver_policy: start.policy(),
            description: Some("telemetry-collector replay".to_owned()),
            ..Default::default()
        })
        .await
        .map_err(|err| stream_err(format!("cannot create a replay consumer: {err}")))?;
    let expected = consumer
        .info()
        .await
        .map_err(|err| stream_err(err.to_string()))?
        .num_pending;
    if expected == 0 {
        return Ok(report);
    }
    progress.set_length(expected);
    let mut messages = consumer
        .messages()
        .await
        .map_err(|err| stream_err(err.to_string()))?;
    let batch_size = batch_size.clamp(1, MAX_BATCH_SIZE);
    let mut done = false;
    while !done {
        let first = tokio::time::timeout(REPLAY_IDLE_TIMEOUT, messages.next())
            .await
            .map_err(|_| ReplayError::Idle {
                after: report.last_seq,
            })?;
        let first = match first {
            Some(Ok(message)) => message,
            Some(Err(err)) => return Err(stream_err(err.to_string())),
            None => break,
        };
        let mut batch = vec![first];
        done = is_last(&batch[0], last);
        let deadline = tokio::time::Instant::now() + REPLAY_LINGER;
        while !done && batch.len() < batch_size {
            match tokio::time::timeout_at(deadline, messages.next()).await {
                Ok(Some(Ok(message))) => {
                    done = is_last(&message, last);
                    batch.push(message);
                }
                Ok(Some(Err(err))) => return Err(stream_err(err.to_string())),
                Ok(None) | Err(_) => break,
            }
        }
        let (parsed, last_seq) = to_batch(subjects, stream, &batch);
        let written = store
            .write(&parsed)
            .await
            .map_err(|source| ReplayError::Store {
                after: report.last_seq,
                source,
            })?;
        report.messages += batch.len() as u64;
        report.stored += written.stored;
        report.duplicates += written.duplicates;
        report.dead_letters += written.dead_letters;
        report.last_seq = last_seq;
        progress.inc(batch.len() as u64);
    }
    progress.finish();
    Ok(report)
}

/// Whether `message` is the last one to replay: the stream's last sequence at start,
/// or nothing was pending behind it when it was delivered.
fn is_last(message: &Message, last: u64) -> bool {
    message
        .info()
        .map(|info| info.stream_sequence >= last || info.pending == 0)
        .unwrap_or(false)
}

/// The same parse as live ingest: facts and dead letters of one batch.
fn to_batch(subjects: &Subjects, stream: &str, messages: &[Message]) -> (Batch, u64) {
    let mut batch = Batch {
        stream: stream.to_owned(),
        received_at: now_ms(),
        facts: Vec::with_capacity(messages.len()),
        dead: Vec::new(),
    };
    let mut last_seq = 0;
    for message in messages {
        let seq = message.info().map(|i| i.stream_sequence).unwrap_or(0);
        last_seq = last_seq.max(seq);
        let payload: Bytes = message.payload.clone();
        match domain::parse(subjects, message.subject.as_str(), seq, payload) {
            Parsed::Fact(fact) => batch.facts.push(*fact),
            Parsed::Dead(dead) => batch.dead.push(dead),
        }
    }
    (batch, last_seq)
}

/// A progress bar on stderr for `expected` messages (hidden when stderr is not a
/// terminal).
pub fn progress_bar() -> ProgressBar {
    let bar = ProgressBar::new(0);
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} replay [{bar:40}] {pos}/{len} messages, {per_sec}, eta {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// `telemetry-collector replay`.
#[derive(Debug, Clone, clap::Args)]
#[command(group = clap::ArgGroup::new("from").multiple(false))]
pub struct ReplayArgs {
    /// NATS connection, subject prefix and stream.
    #[command(flatten)]
    pub nats: NatsArgs,
    /// Database to write into (need not be empty: writes are idempotent).
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// From the oldest message the stream holds (the default).
    #[arg(long = "from-start", group = "from")]
    pub from_start: bool,
    /// From this stream sequence.
    #[arg(long = "from-seq", group = "from")]
    pub from_seq: Option<u64>,
    /// From the first message stored at or after this time (RFC 3339).
    #[arg(long = "from-time", group = "from", value_parser = parse_time)]
    pub from_time: Option<time::OffsetDateTime>,
    /// Messages per transaction.
    #[arg(long = "batch-size", env = "COLLECTOR_BATCH_SIZE", default_value_t = DEFAULT_BATCH_SIZE)]
    pub batch_size: usize,
}

fn parse_time(text: &str) -> Result<time::OffsetDateTime, String> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|err| format!("{text:?} is not an RFC 3339 time like 2026-11-29T12:00:00Z: {err}"))
}

impl ReplayArgs {
    /// Where to start.
    pub fn start(&self) -> StartAt {
        match (self.from_seq, self.from_time) {
            (Some(seq), _) => StartAt::Seq(seq),
            (None, Some(at)) => StartAt::Time(at),
            (None, None) => StartAt::Start,
        }
    }
}

/// Runs `replay` with a progress bar and prints what it wrote.
pub async fn run(args: &ReplayArgs) -> Result<ReplayReport, ReplayError> {
    let mut settings = args.database.settings();
    settings.nats = args.nats.nats_config("telemetry-collector-replay");
    settings.subject_prefix = args.nats.subject_prefix.clone();
    settings.stream = args.nats.stream.clone();
    let (subjects, _) = settings.validate()?;
    let store = store::connect(settings.database_url.expose_secret(), &settings.store)
        .await
        .map_err(|source| ReplayError::Store { after: 0, source })?;
    store
        .migrate()
        .await
        .map_err(|source| ReplayError::Store { after: 0, source })?;
    let client = service_kit::nats::connect(&settings.nats).await?;
    let js = jetstream::new(client.clone());
    let bar = progress_bar();
    let result = replay(
        &js,
        &settings.stream,
        &subjects,
        store.as_ref(),
        args.start(),
        args.batch_size,
        &bar,
    )
    .await;
    store.close().await;
    let report = result?;
    println!(
        "replayed {} messages up to sequence {}: {} new events, {} already stored, {} new dead letters",
        report.messages, report.last_seq, report.stored, report.duplicates, report.dead_letters
    );
    Ok(report)
}
