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

use std::sync::atomic::Ordering::Relaxed;
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

/// How often the pull stream expects a heartbeat from the server while idle. Two
/// missed ones mean the broker forgot the pull request (lost while the consumer was
/// being created, or with a consumer leader that died): the loop then opens a new
/// one, so a lost request costs two seconds, not the rest of [`PULL_EXPIRES`].
pub const PULL_HEARTBEAT: Duration = Duration::from_secs(1);
/// Pull requests lost in a row (no heartbeat for two intervals each) before `/readyz`
/// says the consumer is not attached: three, about six seconds, longer than a
/// consumer leader election usually takes, so one election does not flap readiness,
/// while a broker without quorum shows within seconds.
pub const LOST_PULLS_UNREADY: u32 = 3;
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

impl AttachError {
    /// Whether retrying may succeed (the broker did not answer, JetStream has no
    /// quorum or leader yet), as opposed to a setting the broker refuses.
    pub fn is_transient(&self) -> bool {
        use async_nats::jetstream::context::CreateStreamErrorKind as S;
        use async_nats::jetstream::stream::ConsumerErrorKind as C;
        match self {
            Self::Stream { source, .. } => match source.kind() {
                S::TimedOut | S::JetStreamUnavailable | S::Response | S::ResponseParse => true,
                S::JetStream(err) => telemetry_proto::stream::is_transient(&err),
                _ => false,
            },
            Self::Consumer { source, .. } => match source.kind() {
                C::TimedOut | C::Request | C::Other => true,
                C::JetStream(err) => telemetry_proto::stream::is_transient(&err),
                _ => false,
            },
        }
    }
}

/// The durable consumer, attached, and how the stream it found differs from the
/// configured spec (empty when it matches).
pub struct Attached {
    /// The consumer to pull from.
    pub consumer: PullConsumer,
    /// See [`StreamSpec::differences`].
    pub differences: Vec<telemetry_proto::stream::Difference>,
}

/// Ensures the stream (shared definition) and the durable pull consumer. An existing
/// stream is used as it is: how it differs from the spec is returned, for a warning.
pub async fn attach(
    js: &jetstream::Context,
    spec: &StreamSpec,
    settings: &Settings,
) -> Result<Attached, AttachError> {
    let stream = js
        .get_or_create_stream(spec.config())
        .await
        .map_err(|source| AttachError::Stream {
            stream: spec.name.clone(),
            hint: create_error_hint(&source),
            source,
        })?;
    let differences = spec.differences(&stream.cached_info().config);
    let consumer = stream
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
        })?;
    Ok(Attached {
        consumer,
        differences,
    })
}

/// Logs that the existing stream differs from the configured spec (once per start).
pub fn warn_differences(spec: &StreamSpec, differences: &[telemetry_proto::stream::Difference]) {
    if !differences.is_empty() {
        tracing::warn!(
            stream = %spec.name,
            differences = %telemetry_proto::stream::describe_differences(differences),
            "the existing stream differs from the configured spec and keeps its own settings; \
             `telemetry-collector stream update` applies the configured ones"
        );
    }
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

/// Why a pull stream was given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Shutdown: no new batch.
    Shutdown,
    /// The pull request was lost or the stream ended: pull again from the same
    /// consumer (no JetStream API request needed, so it works while a new consumer
    /// leader is being elected).
    PullAgain,
    /// The consumer is gone (deleted, or replaced by a push consumer): attach again.
    Reattach,
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
    /// Pull requests lost in a row; reset by a message or a healthy wait.
    pub(crate) lost_pulls: std::sync::atomic::AtomicU32,
}

impl Ingest {
    /// Runs until `shutdown` is cancelled. Attaching is retried with backoff for as
    /// long as it fails (the broker down, JetStream without quorum), at start-up as
    /// much as later; `/readyz` says why meanwhile. A lost pull request is replaced
    /// from the consumer already attached.
    #[tracing::instrument(name = "ingest", skip_all, fields(consumer = %self.settings.consumer))]
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = self.settings.min_backoff;
        let mut warned = false;
        let mut attached: Option<PullConsumer> = None;
        while !shutdown.is_cancelled() {
            let opened = match &attached {
                Some(consumer) => self.pull(consumer).await.map_err(OpenError::from),
                None => match attach(&self.js, &self.spec, &self.settings).await {
                    Ok(Attached {
                        consumer,
                        differences,
                    }) => {
                        if !warned {
                            warn_differences(&self.spec, &differences);
                            warned = true;
                        }
                        let opened = self.pull(&consumer).await.map_err(OpenError::from);
                        attached = Some(consumer);
                        opened
                    }
                    Err(err) => Err(err.into()),
                },
            };
            let messages = match opened {
                Ok(messages) => messages,
                Err(err) => {
                    attached = None;
                    self.metrics.set_consumer_detached(err.to_string());
                    tracing::warn!(reason = %err, retry_in = ?backoff, "consumer not attached; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(self.settings.max_backoff);
                    continue;
                }
            };
            backoff = self.settings.min_backoff;
            if self.lost_pulls.load(Relaxed) < LOST_PULLS_UNREADY {
                self.metrics.set_consumer_attached();
            }
            match self.drain(messages, &shutdown).await {
                End::Reattach => attached = None,
                End::PullAgain => {
                    let lost = self.lost_pulls.fetch_add(1, Relaxed) + 1;
                    if lost >= LOST_PULLS_UNREADY {
                        self.metrics.set_consumer_detached(format!(
                            "the broker lost {lost} pull requests in a row (no heartbeat for \
                             {:?} each): JetStream without quorum, or the consumer's leader \
                             not elected yet",
                            PULL_HEARTBEAT * 2
                        ));
                    }
                }
                End::Shutdown => {}
            }
        }
        tracing::info!("ingest stopped");
    }

    /// A new pull stream (pull request) on `consumer`.
    async fn pull(
        &self,
        consumer: &PullConsumer,
    ) -> Result<MessageStream, async_nats::jetstream::consumer::StreamError> {
        consumer
            .stream()
            .max_messages_per_batch(self.settings.batch_size)
            .heartbeat(PULL_HEARTBEAT)
            .expires(PULL_EXPIRES)
            .messages()
            .await
    }

    /// Takes batches from `messages` until it ends or shutdown. Three stages joined by
    /// channels of [`PIPELINE_DEPTH`] batches: while batches are being written (as many
    /// at once as the store has writers, [`Store::writers`]), the next is collected
    /// and parsed, and committed ones' acks go out. Each batch is acked only after its
    /// own commit; batches commute, so they may commit in any order.
    async fn drain(&self, mut messages: MessageStream, shutdown: &CancellationToken) -> End {
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
            let end = loop {
                let messages = match self.collect(&mut messages, shutdown).await {
                    Ok(messages) => messages,
                    Err(end) => break end,
                };
                let batch = self.parse(&messages);
                if let Err(refused) = tx.send((messages, batch)).await {
                    // The writer stopped (shutdown while the database was down).
                    give_back(refused.0 .0);
                    break End::Shutdown;
                }
            };
            drop(tx);
            // What the pull stream already received will not be written either.
            while let Some(Some(Ok(message))) = messages.next().now_or_never() {
                give_back(vec![message]);
            }
            // Unsubscribes this pull request before the NAKs below go out.
            drop(messages);
            end
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
        let (end, (), ()) = tokio::join!(collect, write, ack);
        let unwritten = unwritten.into_inner().unwrap_or_else(|e| e.into_inner());
        if !unwritten.is_empty() {
            nak(&unwritten).await;
        }
        end
    }

    /// The next batch: waits for a first message, then up to the linger time or the
    /// batch size. `Err` when this pull stream is done: shutdown, the pull request
    /// lost or ended (pull again), or the consumer gone (attach again).
    #[tracing::instrument(name = "pull", skip_all)]
    async fn collect(
        &self,
        messages: &mut MessageStream,
        shutdown: &CancellationToken,
    ) -> Result<Vec<jetstream::Message>, End> {
        // Since when this call waits: a missed heartbeat only counts once we have
        // listened for two heartbeats ourselves (async-nats' timer also runs while the
        // stream is not polled, e.g. while the writer is busy).
        let listening = tokio::time::Instant::now();
        // Listened this long without an error: heartbeats arrive, the pull is served.
        let healthy_at = listening + PULL_HEARTBEAT * 2 + PULL_HEARTBEAT / 2;
        let mut healthy = false;
        let mut batch = loop {
            let first = tokio::select! {
                // Shutdown first: once it fired, no new batch starts.
                biased;
                _ = shutdown.cancelled() => return Err(End::Shutdown),
                next = messages.next() => next,
                _ = tokio::time::sleep_until(healthy_at), if !healthy => {
                    healthy = true;
                    self.pull_served();
                    continue;
                }
            };
            match first.ok_or(End::PullAgain)? {
                Ok(message) => {
                    self.pull_served();
                    break vec![message];
                }
                Err(err) => match err.kind() {
                    pull::MessagesErrorKind::ConsumerDeleted
                    | pull::MessagesErrorKind::PushBasedConsumer => {
                        tracing::warn!(error = %err, "pull stream ended; attaching again");
                        self.metrics.set_consumer_detached(err.to_string());
                        return Err(End::Reattach);
                    }
                    pull::MessagesErrorKind::MissingHeartbeat
                        if listening.elapsed() < PULL_HEARTBEAT * 2 =>
                    {
                        tracing::debug!("heartbeat timer ran while not listening; ignored");
                    }
                    pull::MessagesErrorKind::MissingHeartbeat
                    | pull::MessagesErrorKind::NoResponders => {
                        // The broker forgot this pull request: async-nats would wait
                        // for it until it expires; a new one is served at once.
                        tracing::warn!(error = %err, "pull request lost; opening a new one");
                        return Err(End::PullAgain);
                    }
                    _ => tracing::warn!(error = %err, "pull stream error"),
                },
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
        Ok(batch)
    }

    /// The pull request is served (a message came, or heartbeats did): the broker
    /// works, whatever lost the earlier requests has passed.
    fn pull_served(&self) {
        if self.lost_pulls.swap(0, Relaxed) > 0 {
            tracing::info!("pull requests served again");
        }
        self.metrics.set_consumer_attached();
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
