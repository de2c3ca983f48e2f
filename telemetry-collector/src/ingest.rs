//! The ingest loop: durable pull consumer → batch (bounded by size and linger) → parse
//! → ONE transaction → commit → ack (its own stage, so the next write starts at once).
//!
//! - Any number of collectors may share the durable consumer; the broker hands each
//!   message to one of them, and the idempotent writes make a redelivery harmless.
//! - A message that cannot be used is a dead letter written in the same transaction
//!   and acked with its batch: it never blocks the stream.
//! - A database error is never a dead letter: nothing is acked, the batch is kept and
//!   retried with backoff without end (extending the broker's ack wait with
//!   in-progress acks), and `/readyz` reports the reason until a commit succeeds.
//! - Shutdown finishes the batch in flight (unless the database is down, in which case
//!   its messages stay unacked and are redelivered to whoever runs next). Messages the
//!   broker had already pushed to this collector's open pull request but that no batch
//!   took stay unacked too, and are redelivered after the ack wait.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::pull::{self, Stream as MessageStream};
use async_nats::jetstream::consumer::{AckPolicy, PullConsumer};
use async_nats::jetstream::{self, AckKind};
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use telemetry_proto::stream::create_error_hint;
use telemetry_proto::{StreamSpec, Subjects};
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::domain::{self, Parsed};
use crate::metrics::Metrics;
use crate::store::{Batch, Store};

/// How often the pull stream expects a heartbeat from the server while idle.
pub const PULL_HEARTBEAT: Duration = Duration::from_secs(5);
/// Batches parsed and waiting for the writer: one, so the next batch is ready the
/// moment the current commit ends, without holding more messages unacked than needed.
pub const PIPELINE_DEPTH: usize = 1;
/// A batch's messages (to ack) and what they parsed into.
type Pending = (Vec<jetstream::Message>, Batch);
/// How long one pull request stays open.
pub const PULL_EXPIRES: Duration = Duration::from_secs(30);

/// Why the consumer could not be attached.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// The stream could not be found or created.
    #[error("cannot ensure stream {stream}: {source}{hint}")]
    Stream {
        /// Stream name.
        stream: String,
        /// Why.
        source: async_nats::jetstream::context::CreateStreamError,
        /// Which setting to change, when the error says ([`create_error_hint`]).
        hint: &'static str,
    },
    /// The consumer could not be found or created.
    #[error("cannot attach consumer {consumer}: {source}")]
    Consumer {
        /// Consumer name.
        consumer: String,
        /// Why.
        source: async_nats::jetstream::stream::ConsumerError,
    },
}

/// Ensures the stream (shared definition) and the durable pull consumer.
pub async fn attach(
    js: &jetstream::Context,
    spec: &StreamSpec,
    settings: &Settings,
) -> Result<PullConsumer, AttachError> {
    let stream = js
        .get_or_create_stream(spec.config())
        .await
        .map_err(|source| AttachError::Stream {
            stream: spec.name.clone(),
            hint: create_error_hint(&source),
            source,
        })?;
    stream
        .get_or_create_consumer(
            &settings.consumer,
            pull::Config {
                durable_name: Some(settings.consumer.clone()),
                description: Some("telemetry-collector: batch, commit, then ack".to_owned()),
                ack_policy: AckPolicy::Explicit,
                ack_wait: settings.ack_wait,
                max_ack_pending: settings.max_ack_pending,
                ..Default::default()
            },
        )
        .await
        .map_err(|source| AttachError::Consumer {
            consumer: settings.consumer.clone(),
            source,
        })
}

/// The loop's inputs.
pub struct Ingest {
    pub(crate) js: jetstream::Context,
    pub(crate) subjects: Subjects,
    pub(crate) spec: StreamSpec,
    pub(crate) settings: Settings,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) metrics: Arc<Metrics>,
}

impl Ingest {
    /// Runs until `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = self.settings.min_backoff;
        while !shutdown.is_cancelled() {
            let messages = match self.open().await {
                Ok(messages) => messages,
                Err(reason) => {
                    self.metrics.set_consumer_attached(false);
                    tracing::warn!(%reason, "consumer not attached; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(self.settings.max_backoff);
                    continue;
                }
            };
            backoff = self.settings.min_backoff;
            self.metrics.set_consumer_attached(true);
            self.drain(messages, &shutdown).await;
        }
        tracing::info!("ingest stopped");
    }

    async fn open(&self) -> Result<MessageStream, String> {
        let consumer = attach(&self.js, &self.spec, &self.settings)
            .await
            .map_err(|err| err.to_string())?;
        consumer
            .stream()
            .max_messages_per_batch(self.settings.batch_size)
            .heartbeat(PULL_HEARTBEAT)
            .expires(PULL_EXPIRES)
            .messages()
            .await
            .map_err(|err| format!("cannot pull from consumer: {err}"))
    }

    /// Takes batches from `messages` until it ends or shutdown. Three stages joined by
    /// channels of [`PIPELINE_DEPTH`] batches: while batches are being written (as many
    /// at once as the store has writers, [`Store::writers`]), the next is collected
    /// and parsed, and committed ones' acks go out. Each batch is acked only after its
    /// own commit; batches commute, so they may commit in any order.
    async fn drain(&self, mut messages: MessageStream, shutdown: &CancellationToken) {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Pending>(PIPELINE_DEPTH);
        let (committed_tx, mut committed_rx) =
            tokio::sync::mpsc::channel::<Vec<jetstream::Message>>(PIPELINE_DEPTH);
        let collect = async move {
            while let Some(messages) = self.collect(&mut messages, shutdown).await {
                let batch = self.parse(&messages);
                if tx.send((messages, batch)).await.is_err() {
                    return;
                }
            }
        };
        let writers = self.store.writers().max(1);
        let write = async move {
            let mut writing = FuturesUnordered::new();
            let mut taking = true;
            loop {
                tokio::select! {
                    next = rx.recv(), if taking && writing.len() < writers => match next {
                        Some((messages, batch)) => writing.push(async move {
                            self.write(&messages, batch, shutdown).await.map(|()| messages)
                        }),
                        None => taking = false,
                    },
                    Some(written) = writing.next(), if !writing.is_empty() => match written {
                        // Committed: hand it to the ack stage, which outlives this one.
                        Ok(messages) => {
                            if committed_tx.send(messages).await.is_err() {
                                return;
                            }
                        }
                        // Shutdown interrupted a retry: that batch stays unacked; the
                        // others in flight still finish (and are acked if committed).
                        Err(()) => taking = false,
                    },
                    else => return,
                }
            }
        };
        let ack = async move {
            while let Some(messages) = committed_rx.recv().await {
                for message in &messages {
                    if let Err(err) = message.ack().await {
                        // The commit stands; the broker will redeliver and the write is
                        // idempotent.
                        tracing::warn!(error = %err, "ack failed; message will be redelivered");
                    }
                }
            }
        };
        tokio::join!(collect, write, ack);
    }

    /// The next batch: waits for a first message, then up to the linger time or the
    /// batch size. `None` when the stream ended, the consumer is gone, or on shutdown.
    async fn collect(
        &self,
        messages: &mut MessageStream,
        shutdown: &CancellationToken,
    ) -> Option<Vec<jetstream::Message>> {
        let mut batch = loop {
            let first = tokio::select! {
                // Shutdown first: once it fired, no new batch starts.
                biased;
                _ = shutdown.cancelled() => return None,
                next = messages.next() => next,
            };
            match first? {
                Ok(message) => break vec![message],
                Err(err) => {
                    tracing::warn!(error = %err, "pull stream error");
                    if matches!(
                        err.kind(),
                        pull::MessagesErrorKind::ConsumerDeleted
                            | pull::MessagesErrorKind::PushBasedConsumer
                    ) {
                        self.metrics.set_consumer_attached(false);
                        return None;
                    }
                }
            }
        };
        let deadline = tokio::time::Instant::now() + self.settings.batch_linger;
        while batch.len() < self.settings.batch_size && !shutdown.is_cancelled() {
            match tokio::time::timeout_at(deadline, messages.next()).await {
                Ok(Some(Ok(message))) => batch.push(message),
                Ok(Some(Err(err))) => {
                    tracing::warn!(error = %err, "pull stream error");
                    break;
                }
                Ok(None) | Err(_) => break,
            }
        }
        Some(batch)
    }

    /// Writes one batch, retrying until it commits. `Err` only when shutdown
    /// interrupted a retry: the batch stays unacked.
    async fn write(
        &self,
        messages: &[jetstream::Message],
        batch: Batch,
        shutdown: &CancellationToken,
    ) -> Result<(), ()> {
        let mut backoff = self.settings.min_backoff;
        let mut last_progress = Instant::now();
        let mut failures = 0u32;
        loop {
            let started = Instant::now();
            match self.store.write(&batch).await {
                Ok(report) => {
                    self.metrics
                        .committed(messages.len(), started.elapsed(), &report);
                    if failures > 0 {
                        tracing::info!(failures, "database back; batch committed");
                    }
                    break;
                }
                Err(err) => {
                    failures += 1;
                    self.metrics.db_failed(err.to_string());
                    if failures == 1 {
                        tracing::error!(error = %err, batch = messages.len(), "batch write failed; retrying with backoff, nothing acked");
                    } else {
                        tracing::debug!(error = %err, failures, "batch write failed again");
                    }
                    if last_progress.elapsed() >= self.settings.ack_wait / 3 {
                        // Tell the broker we are still working on these, so it does not
                        // hand them to another collector while we retry.
                        for message in messages {
                            let _ = message.ack_with(AckKind::Progress).await;
                        }
                        last_progress = Instant::now();
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => return Err(()),
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(self.settings.max_backoff);
                }
            }
        }
        Ok(())
    }

    fn parse(&self, messages: &[jetstream::Message]) -> Batch {
        let mut batch = Batch {
            stream: self.spec.name.clone(),
            received_at: now_ms(),
            facts: Vec::with_capacity(messages.len()),
            dead: Vec::new(),
        };
        for message in messages {
            // The backlog gauges come from the broker ([`crate::backlog`]), not from here:
            // during an outage nothing is delivered and this view would freeze.
            let stream_seq = message.info().map(|info| info.stream_sequence).unwrap_or(0);
            match domain::parse(
                &self.subjects,
                message.subject.as_str(),
                stream_seq,
                message.payload.clone(),
            ) {
                Parsed::Fact(fact) => batch.facts.push(*fact),
                Parsed::Dead(dead) => {
                    tracing::warn!(subject = %dead.origin.subject, stream_seq, reason = %dead.reason, "dead letter");
                    batch.dead.push(dead);
                }
            }
        }
        batch
    }
}

/// Unix ms now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
