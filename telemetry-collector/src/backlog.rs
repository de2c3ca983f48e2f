//! The backlog watcher: how far behind the broker the collectors are, read from the
//! broker itself every [`DEFAULT_BACKLOG_INTERVAL`] (`COLLECTOR_BACKLOG_INTERVAL_SECS`).
//!
//! The ingest loop only learns about the backlog from the messages it is delivered, and
//! during a database outage it is delivered nothing: its view froze (at 0) while the
//! broker's backlog grew. So this task asks the broker for the durable consumer's
//! info and sets three gauges ([`crate::metrics::Metrics::set_backlog`]):
//!
//! - `collector_consumer_pending`: messages on the stream not yet delivered;
//! - `collector_consumer_ack_pending`: delivered to a collector, not yet acked;
//! - `collector_oldest_unacked_age_seconds`: how long ago the broker stored the oldest
//!   message not acked yet (delivered or not); 0 when everything is acked.
//!
//! The oldest unacked message is the first one the stream still holds after the
//! consumer's ack floor (everything up to the floor is acked). One that is gone (past
//! the stream's max age or bytes, or deleted) is skipped: the broker is asked for the
//! next message at or after `floor + 1` on any subject.
//!
//! The numbers are the consumer's, so every collector sharing it reports the same
//! backlog. The age is measured against this machine's clock from the broker's
//! timestamp (clock skew shows up in it; it never goes below 0). A failed read is
//! logged at warn (at most once per [`ERROR_LOG_INTERVAL`]), the gauges keep their last
//! values, and the watcher tries again at the next tick: it never stops ingest.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream::RawMessageErrorKind};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// How often the backlog is read from the broker (`COLLECTOR_BACKLOG_INTERVAL_SECS`):
/// two requests per collector per tick, cheap for the broker, and fine-grained enough
/// for a gauge scraped every 15-60 s.
pub const DEFAULT_BACKLOG_INTERVAL: Duration = Duration::from_secs(5);
/// Upper bound of the interval knob: a slower watcher would hide an outage.
pub const MAX_BACKLOG_INTERVAL: Duration = Duration::from_secs(300);
/// At most one warning per this interval while the backlog cannot be read.
pub const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(60);

/// The consumer's backlog as the broker counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Backlog {
    /// Messages on the stream not yet delivered to the consumer.
    pub pending: u64,
    /// Messages delivered to the consumer's collectors and not yet acked.
    pub ack_pending: u64,
    /// When the broker stored the oldest message not acked yet (unix ms, the broker's
    /// clock); `None` when everything is acked.
    pub oldest_unacked_ms: Option<i64>,
}

/// Why the backlog could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BacklogError {
    /// The consumer's info could not be read.
    #[error("cannot read consumer {consumer} of stream {stream}: {source}")]
    Consumer {
        /// Stream name.
        stream: String,
        /// Consumer name.
        consumer: String,
        /// Why.
        source: async_nats::jetstream::context::ConsumerInfoError,
    },
    /// The oldest unacked message could not be read.
    #[error("cannot read stream {stream} at sequence {sequence}: {source}")]
    Message {
        /// Stream name.
        stream: String,
        /// The first sequence after the ack floor.
        sequence: u64,
        /// Why.
        source: async_nats::jetstream::stream::RawMessageError,
    },
    /// The stream name is not one the broker accepts.
    #[error("stream {stream}: {source}")]
    Stream {
        /// Stream name.
        stream: String,
        /// Why.
        source: async_nats::jetstream::context::GetStreamError,
    },
}

/// Reads the backlog of one durable consumer.
pub struct BacklogWatcher {
    stream: jetstream::stream::Stream<()>,
    stream_name: String,
    consumer: String,
    interval: Duration,
    metrics: Arc<Metrics>,
}

impl BacklogWatcher {
    /// A watcher of `consumer` on `stream`, setting `metrics` every `interval`.
    pub async fn new(
        js: &jetstream::Context,
        stream: &str,
        consumer: &str,
        interval: Duration,
        metrics: Arc<Metrics>,
    ) -> Result<Self, BacklogError> {
        // No request: only a handle on the name.
        let handle =
            js.get_stream_no_info(stream)
                .await
                .map_err(|source| BacklogError::Stream {
                    stream: stream.to_owned(),
                    source,
                })?;
        Ok(Self {
            stream: handle,
            stream_name: stream.to_owned(),
            consumer: consumer.to_owned(),
            interval,
            metrics,
        })
    }

    /// Reads the backlog once: the consumer's info, then (when something is unacked)
    /// the first message the stream holds after the ack floor.
    pub async fn read(&self) -> Result<Backlog, BacklogError> {
        let info = self
            .stream
            .consumer_info(&self.consumer)
            .await
            .map_err(|source| BacklogError::Consumer {
                stream: self.stream_name.clone(),
                consumer: self.consumer.clone(),
                source,
            })?;
        let mut backlog = Backlog {
            pending: info.num_pending,
            ack_pending: info.num_ack_pending as u64,
            oldest_unacked_ms: None,
        };
        if backlog.pending + backlog.ack_pending == 0 {
            return Ok(backlog);
        }
        let sequence = info.ack_floor.stream_sequence + 1;
        // `next_by_subject(">")`: the message at `sequence` or, when that one is gone
        // (max age, max bytes, deleted), the first one after it.
        let oldest = self
            .stream
            .raw_message_builder()
            .sequence(sequence)
            .next_by_subject(">")
            .send()
            .await;
        match oldest {
            Ok(message) => {
                let ms = message.time.unix_timestamp_nanos() / 1_000_000;
                backlog.oldest_unacked_ms = Some(i64::try_from(ms).unwrap_or(i64::MAX));
            }
            // Everything after the floor went between the two requests.
            Err(err) if err.kind() == RawMessageErrorKind::NoMessageFound => {}
            Err(source) => {
                return Err(BacklogError::Message {
                    stream: self.stream_name.clone(),
                    sequence,
                    source,
                })
            }
        }
        Ok(backlog)
    }

    /// Reads the backlog now and every interval until `stop`; never fails.
    pub async fn run(self, stop: CancellationToken) {
        let mut ticks = tokio::time::interval(self.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failures_since_line = 0u64;
        let mut last_line: Option<Instant> = None;
        let mut failing = false;
        loop {
            let read = tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                _ = ticks.tick() => tokio::select! {
                    biased;
                    _ = stop.cancelled() => return,
                    read = self.read() => read,
                },
            };
            match read {
                Ok(backlog) => {
                    self.metrics.set_backlog(&backlog);
                    if failing {
                        tracing::info!("consumer backlog readable again");
                        failing = false;
                    }
                }
                Err(err) => {
                    failing = true;
                    failures_since_line += 1;
                    if last_line.is_none_or(|at| at.elapsed() >= ERROR_LOG_INTERVAL) {
                        tracing::warn!(
                            error = %err,
                            failures = failures_since_line,
                            "cannot read the consumer backlog; its gauges keep their last \
                             values (at most one such line a minute)"
                        );
                        failures_since_line = 0;
                        last_line = Some(Instant::now());
                    }
                }
            }
        }
    }
}

/// The watcher of `ingest`'s consumer, run beside it by `serve` / `ingest` until `stop`.
pub(crate) fn watch(
    ingest: &crate::ingest::Ingest,
    stop: CancellationToken,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let js = ingest.js.clone();
    let stream = ingest.spec.name.clone();
    let consumer = ingest.settings.consumer.clone();
    let interval = ingest.settings.backlog_interval;
    let metrics = ingest.metrics.clone();
    async move {
        match BacklogWatcher::new(&js, &stream, &consumer, interval, metrics).await {
            Ok(watcher) => watcher.run(stop).await,
            Err(err) => tracing::error!(error = %err, "backlog watcher not started"),
        }
    }
}
