//! The ingest loop: durable pull consumer → batch (bounded by size and linger) → parse
//! → ONE transaction → commit → ack (its own stage, so the next write starts at once).
//!
//! - Any number of collectors may share the durable consumer; the broker hands each
//!   message to one of them, and the idempotent writes make a redelivery harmless.
//! - A message that cannot be used is a dead letter written in the same transaction
//!   and acked with its batch: it never blocks the stream.
//! - A transient database error (outage, disk full, lock) is never a dead letter:
//!   nothing is acked, the batch is kept and retried with backoff without end
//!   (extending the broker's ack wait with in-progress acks), and `/readyz` reports the
//!   cause until a commit succeeds. A permanent one (the database refuses some rows) is
//!   isolated by [`store::write_isolating`]: the refused envelopes become dead letters,
//!   the rest is stored, and the batch is acked.
//! - Shutdown finishes the batch in flight unless the database is down; then that
//!   batch, the batches parsed behind it and what the pull stream already received are
//!   NAKed, so whoever runs next gets them at once. Only a crash leaves messages to
//!   the ack wait (`COLLECTOR_ACK_WAIT_SECS`): a successor idles until it passes, since
//!   the dead instance's unacked messages count against `max_ack_pending`.
//! - Each stage runs in a span per batch (`pull`, `decode`, `write`, `ack`, inside
//!   `ingest{consumer}`), so a log line says which stage and consumer it comes from;
//!   there is no span per message, which the ingest bench would notice.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::pull::{self, Stream as MessageStream};
use async_nats::jetstream::consumer::{AckPolicy, PullConsumer};
use async_nats::jetstream::{self, AckKind};
use futures::stream::FuturesUnordered;
use futures::{FutureExt as _, StreamExt};
use service_kit::now_ms;
use telemetry_proto::stream::create_error_hint;
use telemetry_proto::{StreamSpec, Subjects};
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::domain::{self, Parsed};
use crate::metrics::Metrics;
use crate::store::{self, Batch, Store};

/// How often the pull stream expects a heartbeat from the server while idle.
pub const PULL_HEARTBEAT: Duration = Duration::from_secs(5);
/// Batches parsed and waiting for the writer: one, so the next batch is ready the
/// moment the current commit ends, without holding more messages unacked than needed.
pub const PIPELINE_DEPTH: usize = 1;
/// A batch's messages (to ack) and what they parsed into.
type Pending = (Vec<jetstream::Message>, Batch);
/// How long a message NAKed at shutdown waits before the broker offers it again.
/// nats-server 2.9 hands an immediately NAKed message straight back to the dead
/// instance's pull request (seen in `tests/outage.rs`); a short delay lets it go to
/// the next pull instead, still far sooner than the ack wait.
pub const SHUTDOWN_NAK_DELAY: Duration = Duration::from_millis(200);
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

/// Why the pull stream could not be opened (the loop retries with backoff).
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The stream or consumer is not there and could not be made.
    #[error(transparent)]
    Attach(#[from] AttachError),
    /// The consumer is there but refused the pull request.
    #[error("cannot pull from consumer: {0}")]
    Pull(#[from] async_nats::jetstream::consumer::StreamError),
}

/// Shutdown interrupted a batch's write retries: the batch is not committed and
/// stays unacked (it is NAKed so someone else gets it now).
#[derive(Debug, thiserror::Error)]
#[error("shutdown interrupted the batch's write retries")]
pub struct Interrupted;

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
    #[tracing::instrument(name = "ingest", skip_all, fields(consumer = %self.settings.consumer))]
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = self.settings.min_backoff;
        while !shutdown.is_cancelled() {
            let messages = match self.open().await {
                Ok(messages) => messages,
                Err(err) => {
                    self.metrics.set_consumer_attached(false);
                    tracing::warn!(reason = %err, "consumer not attached; retrying");
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

    async fn open(&self) -> Result<MessageStream, OpenError> {
        let consumer = attach(&self.js, &self.spec, &self.settings).await?;
        Ok(consumer
            .stream()
            .max_messages_per_batch(self.settings.batch_size)
            .heartbeat(PULL_HEARTBEAT)
            .expires(PULL_EXPIRES)
            .messages()
            .await?)
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
        // Fetched but not written (shutdown during an outage): NAKed at the end.
        let unwritten = std::sync::Mutex::new(Vec::<jetstream::Message>::new());
        let give_back = |messages: Vec<jetstream::Message>| {
            unwritten
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(messages);
        };
        let collect = async {
            while let Some(messages) = self.collect(&mut messages, shutdown).await {
                let batch = self.parse(&messages);
                if let Err(refused) = tx.send((messages, batch)).await {
                    // The writer stopped (shutdown while the database was down).
                    give_back(refused.0 .0);
                    break;
                }
            }
            drop(tx);
            // What the pull stream already received will not be written either.
            while let Some(Some(Ok(message))) = messages.next().now_or_never() {
                give_back(vec![message]);
            }
            // Unsubscribes this pull request before the NAKs below go out.
            drop(messages);
        };
        let writers = self.store.writers().max(1);
        let write = async move {
            let mut writing = FuturesUnordered::new();
            let mut taking = true;
            loop {
                tokio::select! {
                    next = rx.recv(), if taking && writing.len() < writers => match next {
                        Some((messages, batch)) => writing.push(async move {
                            let written = self.write(&messages, batch, shutdown).await;
                            (written, messages)
                        }),
                        None => taking = false,
                    },
                    Some((written, messages)) = writing.next(), if !writing.is_empty() => match written {
                        // Committed: hand it to the ack stage, which outlives this one.
                        Ok(()) => {
                            if committed_tx.send(messages).await.is_err() {
                                break;
                            }
                        }
                        // Shutdown interrupted a retry: NAK that batch (below) so another
                        // collector (or the next one) gets it now, not after the ack
                        // wait; the others in flight still finish (acked if committed).
                        Err(Interrupted) => {
                            give_back(messages);
                            taking = false;
                        }
                    },
                    else => break,
                }
            }
            // Batches parsed but never taken (shutdown during an outage).
            rx.close();
            while let Some((messages, _)) = rx.recv().await {
                give_back(messages);
            }
        };
        let ack = async move {
            while let Some(messages) = committed_rx.recv().await {
                ack(&messages).await;
            }
        };
        tokio::join!(collect, write, ack);
        let unwritten = unwritten.into_inner().unwrap_or_else(|e| e.into_inner());
        if !unwritten.is_empty() {
            nak(&unwritten).await;
        }
    }

    /// The next batch: waits for a first message, then up to the linger time or the
    /// batch size. `None` when the stream ended, the consumer is gone, or on shutdown.
    #[tracing::instrument(name = "pull", skip_all)]
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
    #[tracing::instrument(name = "write", skip_all, fields(messages = messages.len()))]
    async fn write(
        &self,
        messages: &[jetstream::Message],
        batch: Batch,
        shutdown: &CancellationToken,
    ) -> Result<(), Interrupted> {
        let mut backoff = self.settings.min_backoff;
        let mut last_progress = Instant::now();
        let mut failures = 0u32;
        loop {
            let started = Instant::now();
            match store::write_isolating(&*self.store, &batch).await {
                Ok(isolated) => {
                    for (origin, reason) in &isolated.report.refused {
                        tracing::warn!(subject = %origin.subject, stream_seq = origin.stream_seq, %reason, "dead letter");
                    }
                    self.metrics
                        .committed(messages.len(), started.elapsed(), &isolated.report);
                    self.metrics.rejected(isolated.rejected.len());
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
                        _ = shutdown.cancelled() => return Err(Interrupted),
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(self.settings.max_backoff);
                }
            }
        }
        Ok(())
    }

    #[tracing::instrument(name = "decode", skip_all, fields(messages = messages.len()))]
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

/// Acks a committed batch. A failed ack is only logged: the commit stands, the broker
/// redelivers and the write is idempotent.
#[tracing::instrument(name = "ack", skip_all, fields(messages = messages.len()))]
async fn ack(messages: &[jetstream::Message]) {
    for message in messages {
        if let Err(err) = message.ack().await {
            tracing::warn!(error = %err, "ack failed; message will be redelivered");
        }
    }
}

/// Negative-acks `messages`: the broker redelivers them after [`SHUTDOWN_NAK_DELAY`]
/// (to this consumer's next fetch, whichever collector makes it) instead of after the
/// ack wait.
async fn nak(messages: &[jetstream::Message]) {
    for message in messages {
        if let Err(err) = message
            .ack_with(AckKind::Nak(Some(SHUTDOWN_NAK_DELAY)))
            .await
        {
            tracing::debug!(error = %err, "nak failed; redelivered after the ack wait");
        }
    }
    tracing::info!(
        messages = messages.len(),
        "shutdown: returned unwritten messages to the broker"
    );
}
