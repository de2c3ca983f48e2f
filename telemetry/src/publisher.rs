//! The background task that owns the NATS connection and drains the queue.
//!
//! Bounded at every step: it takes events from the queue only while fewer than
//! `max_in_flight` are pending or awaiting acks, so memory stays within the queue's
//! bounds; it sends only while the connection is up, so async-nats' command buffer
//! (which blocks forever once full while disconnected) is never filled; and every
//! await that could hang is under a timeout or the shutdown deadline.
//!
//! A failed publish is retried with the same `Nats-Msg-Id` after a backoff; the broker
//! drops the copy if the first attempt was stored after all.
//!
//! Every ack outcome (events' and `ProducerStats`') also says whether JetStream takes
//! the events at all ([`crate::JetStreamState`]): the connection can be up while a
//! cluster without quorum accepts nothing.

use std::collections::VecDeque;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use async_nats::connection::State;
use async_nats::jetstream::context::{PublishError, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::{self, Context};
use async_nats::Subject;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::{FuturesUnordered, StreamExt};
use prost::Message as _;
use telemetry_proto::stream::{create_error_hint, describe_differences};
use telemetry_proto::v1::envelope::Body;
use telemetry_proto::{BodyKind, StreamSpec, Subjects};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use uuid::{timestamp::context::NoContext, Timestamp, Uuid};

use crate::config::{TelemetryConfig, FINAL_STATS_RESERVE, LINGER_BELOW, MAX_REJECTED_ATTEMPTS};
use crate::handle::{Queued, ShutdownReport};
use crate::ledger::{DropReason, Ledger};
use crate::record::{envelope, Stamp};

/// How often the loop looks again while it waits for the connection or a backoff.
const IDLE_TICK: Duration = Duration::from_millis(20);

/// An encoded event, kept until the broker acknowledges it.
struct Prepared {
    kind: BodyKind,
    event_id: String,
    payload: Bytes,
    bytes: usize,
    attempts: u32,
}

type AckFuture = BoxFuture<'static, (Prepared, Result<(), PublishError>)>;

pub(crate) struct Publisher {
    config: TelemetryConfig,
    stream: StreamSpec,
    subjects: [Subject; 6],
    producer: String,
    started_at_ms: i64,
    ledger: Arc<Ledger>,
    rx: mpsc::Receiver<Queued>,
    stop: Option<oneshot::Receiver<Instant>>,
    done: Option<oneshot::Sender<ShutdownReport>>,
}

/// Loop state that changes as events flow.
struct Flow {
    pending: VecDeque<Prepared>,
    in_flight: FuturesUnordered<AckFuture>,
    retry_at: Option<Instant>,
    backoff: Duration,
    stream_ready: bool,
    /// Why the last attempt to ensure the stream failed, if it did: the reason a
    /// publish then finds no stream.
    ensure_error: Option<String>,
    deadline: Option<Instant>,
    queue_open: bool,
}

impl Publisher {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: TelemetryConfig,
        subjects: Subjects,
        stream: StreamSpec,
        producer: String,
        started_at_ms: i64,
        ledger: Arc<Ledger>,
        rx: mpsc::Receiver<Queued>,
        stop: oneshot::Receiver<Instant>,
        done: oneshot::Sender<ShutdownReport>,
    ) -> Self {
        let subjects = BodyKind::ALL.map(|kind| Subject::from(subjects.for_kind(kind)));
        Self {
            config,
            stream,
            subjects,
            producer,
            started_at_ms,
            ledger,
            rx,
            stop: Some(stop),
            done: Some(done),
        }
    }

    pub async fn run(mut self) {
        let mut flow = Flow {
            pending: VecDeque::new(),
            in_flight: FuturesUnordered::new(),
            retry_at: None,
            backoff: self.config.min_backoff,
            stream_ready: !self.config.ensure_stream,
            ensure_error: None,
            deadline: None,
            queue_open: true,
        };
        let Some(js) = self.connect(&mut flow).await else {
            return self.finish(flow, None).await;
        };
        let mut stats_tick = tokio::time::interval_at(
            Instant::now() + self.config.stats_interval,
            self.config.stats_interval,
        );
        loop {
            let connected = js.client().connection_state() == State::Connected;
            self.ledger.connected.store(connected, Relaxed);
            let backing_off = flow.retry_at.is_some_and(|at| Instant::now() < at);
            if connected && !backing_off {
                if !flow.stream_ready {
                    self.ensure_stream(&js, &mut flow).await;
                }
                self.send_pending(&js, &mut flow).await;
            }
            if let Some(deadline) = flow.deadline {
                let drained =
                    !flow.queue_open && flow.pending.is_empty() && flow.in_flight.is_empty();
                if drained || Instant::now() + FINAL_STATS_RESERVE >= deadline {
                    break;
                }
            }
            let can_take = flow.queue_open
                && flow.pending.len() + flow.in_flight.len() < self.config.max_in_flight;
            let must_poll = !connected || backing_off || flow.deadline.is_some();
            tokio::select! {
                biased;
                Some((prepared, result)) = flow.in_flight.next(), if !flow.in_flight.is_empty() => {
                    self.on_ack(&mut flow, prepared, result);
                }
                deadline = async { self.stop.as_mut().unwrap().await }, if self.stop.is_some() => {
                    self.stop = None;
                    // A dropped sender (no shutdown call) cannot happen while a handle
                    // lives; treat it like a shutdown with the ack timeout as deadline.
                    flow.deadline = Some(deadline.unwrap_or_else(|_| Instant::now() + self.config.ack_timeout));
                    self.rx.close();
                }
                queued = self.rx.recv(), if can_take => match queued {
                    Some(queued) => {
                        let prepared = self.prepare(queued);
                        flow.pending.push_back(prepared);
                        // A trickle: let the events that follow gather (see
                        // `DEFAULT_PUBLISH_LINGER`).
                        if flow.deadline.is_none()
                            && !self.config.publish_linger.is_zero()
                            && flow.pending.len() + flow.in_flight.len() < LINGER_BELOW
                        {
                            tokio::time::sleep(self.config.publish_linger).await;
                        }
                        // Take what is already queued without another trip round the loop.
                        while flow.pending.len() + flow.in_flight.len() < self.config.max_in_flight {
                            match self.rx.try_recv() {
                                Ok(queued) => {
                                    let prepared = self.prepare(queued);
                                    flow.pending.push_back(prepared);
                                }
                                Err(_) => break,
                            }
                        }
                    }
                    None => {
                        flow.queue_open = false;
                        if flow.deadline.is_none() {
                            // Every handle was dropped without `shutdown`: flush anyway.
                            flow.deadline = Some(Instant::now() + self.config.ack_timeout);
                        }
                    }
                },
                _ = stats_tick.tick() => {
                    // Drops of a burst that has stopped still get their line.
                    self.ledger.flush_queue_full_warning(false);
                    let until = Instant::now() + self.config.ack_timeout;
                    self.publish_stats(&js, flow.ensure_error.as_deref(), false, until).await;
                }
                _ = tokio::time::sleep(IDLE_TICK), if must_poll => {}
            }
        }
        self.finish(flow, Some(js)).await;
    }

    /// Builds the client, retrying while the creds file cannot be read (or until shut
    /// down). The client itself connects in the background.
    async fn connect(&mut self, flow: &mut Flow) -> Option<Context> {
        loop {
            match service_kit::nats::connect_in_background(&self.config.nats).await {
                Ok(client) => {
                    return Some(
                        jetstream::ContextBuilder::new()
                            .timeout(self.config.ack_timeout)
                            .max_ack_inflight(self.config.max_in_flight + 16)
                            .backpressure_on_inflight(false)
                            .build(client),
                    )
                }
                Err(err) => tracing::error!(error = %err, "telemetry cannot connect; retrying"),
            }
            let stop = self.stop.as_mut()?;
            tokio::select! {
                deadline = stop => {
                    self.stop = None;
                    flow.deadline = Some(deadline.unwrap_or_else(|_| Instant::now()));
                    self.rx.close();
                    return None;
                }
                _ = tokio::time::sleep(self.config.max_backoff) => {}
            }
        }
    }

    async fn ensure_stream(&self, js: &Context, flow: &mut Flow) {
        let created = tokio::time::timeout(
            self.config.ack_timeout,
            js.get_or_create_stream(self.stream.config()),
        )
        .await;
        flow.ensure_error = match created {
            Ok(Ok(stream)) => {
                self.warn_differences(&stream.cached_info().config);
                None
            }
            Ok(Err(err)) => {
                let hint = create_error_hint(&err);
                tracing::warn!(
                    stream = %self.stream.name, error = %err,
                    "telemetry could not ensure its stream; publishing anyway{hint}"
                );
                Some(err.to_string())
            }
            Err(_) => {
                tracing::warn!(stream = %self.stream.name, "ensuring the stream timed out");
                Some(format!(
                    "no answer within {} ms",
                    self.config.ack_timeout.as_millis()
                ))
            }
        };
        if let Some(err) = &flow.ensure_error {
            self.ledger
                .jetstream
                .failed(format!("cannot ensure stream {}: {err}", self.stream.name));
        }
        // Publish either way: a missing stream shows up as `StreamNotFound` acks, which
        // clear this flag again.
        flow.stream_ready = true;
    }

    /// An existing stream is used as it is, never changed: say how it differs from the
    /// configured spec (its duplicate window, subjects, replicas, ...), once per check.
    fn warn_differences(&self, existing: &async_nats::jetstream::stream::Config) {
        let differences = self.stream.differences(existing);
        if !differences.is_empty() {
            tracing::warn!(
                stream = %self.stream.name,
                differences = %describe_differences(&differences),
                "the existing stream differs from the configured spec and keeps its own \
                 settings; `telemetry-collector stream update` applies the configured ones"
            );
        }
    }

    fn prepare(&self, queued: Queued) -> Prepared {
        let (shop_id, request_id, body) = queued.item.into_parts(&self.config.limits);
        self.encode(
            queued.seq,
            queued.occurred_at_ms,
            shop_id,
            request_id,
            body,
            queued.bytes,
        )
    }

    fn encode(
        &self,
        seq: u64,
        occurred_at_ms: i64,
        shop_id: String,
        request_id: String,
        body: Body,
        bytes: usize,
    ) -> Prepared {
        let kind = BodyKind::of(&body);
        let ms = occurred_at_ms.max(0) as u64;
        let ts = Timestamp::from_unix(NoContext, ms / 1000, (ms % 1000) as u32 * 1_000_000);
        let event_id = Uuid::new_v7(ts).to_string();
        let stamp = Stamp {
            event_id: event_id.clone(),
            occurred_at: occurred_at_ms,
            producer: self.producer.clone(),
            producer_seq: seq,
        };
        let envelope = envelope(stamp, shop_id, request_id, body);
        Prepared {
            kind,
            event_id,
            payload: Bytes::from(envelope.encode_to_vec()),
            bytes,
            attempts: 0,
        }
    }

    async fn send_pending(&self, js: &Context, flow: &mut Flow) {
        while flow.in_flight.len() < self.config.max_in_flight {
            let Some(mut prepared) = flow.pending.pop_front() else {
                return;
            };
            prepared.attempts += 1;
            let publish = PublishMessage::build()
                .payload(prepared.payload.clone())
                .message_id(&prepared.event_id);
            let subject = self.subjects[prepared.kind as usize].clone();
            match js.send_publish(subject, publish).await {
                Ok(ack) => flow.in_flight.push(Box::pin(async move {
                    let result = ack.await.map(drop);
                    (prepared, result)
                })),
                Err(err) => {
                    self.on_ack(flow, prepared, Err(err));
                    return;
                }
            }
        }
    }

    fn on_ack(&self, flow: &mut Flow, prepared: Prepared, result: Result<(), PublishError>) {
        match result {
            Ok(()) => {
                self.ledger.jetstream.acked();
                self.ledger.published.fetch_add(1, Relaxed);
                self.ledger.queued_bytes.fetch_sub(prepared.bytes, Relaxed);
                flow.backoff = self.config.min_backoff;
                flow.retry_at = None;
            }
            Err(err) => {
                let kind = err.kind();
                self.ledger.publish_failures.fetch_add(1, Relaxed);
                self.publish_failed(flow.ensure_error.as_deref(), &err);
                let permanent = match kind {
                    PublishErrorKind::MaxPayloadExceeded => true,
                    PublishErrorKind::Other => prepared.attempts >= MAX_REJECTED_ATTEMPTS,
                    _ => false,
                };
                if kind == PublishErrorKind::StreamNotFound && self.config.ensure_stream {
                    flow.stream_ready = false;
                }
                if permanent {
                    tracing::error!(event_id = %prepared.event_id, error = %kind, "broker refused a telemetry event; dropped");
                    self.ledger.drop_event(DropReason::BrokerRejected);
                    self.ledger.queued_bytes.fetch_sub(prepared.bytes, Relaxed);
                    return;
                }
                tracing::debug!(event_id = %prepared.event_id, error = %kind, "telemetry publish failed; retrying");
                flow.pending.push_front(prepared);
                if flow.retry_at.is_none_or(|at| at <= Instant::now()) {
                    flow.retry_at = Some(Instant::now() + flow.backoff);
                    flow.backoff = (flow.backoff * 2).min(self.config.max_backoff);
                }
            }
        }
    }

    /// Records a failed publish in the JetStream state, unless the event itself was the
    /// problem (over the server's max payload).
    fn publish_failed(&self, ensure_error: Option<&str>, err: &PublishError) {
        let reason = match (err.kind(), ensure_error) {
            (PublishErrorKind::MaxPayloadExceeded, _) => return,
            (PublishErrorKind::StreamNotFound, Some(ensure_error)) => {
                format!("{err}; creating the stream failed: {ensure_error}")
            }
            _ => err.to_string(),
        };
        self.ledger.jetstream.failed(reason);
    }

    /// Publishes the ledger. Not counted as an event: losing one only delays the totals
    /// to the next one.
    async fn publish_stats(
        &mut self,
        js: &Context,
        ensure_error: Option<&str>,
        is_final: bool,
        until: Instant,
    ) -> bool {
        let stats = self.ledger.snapshot();
        let body = Body::ProducerStats(stats.stats_body(
            self.started_at_ms,
            is_final,
            &self.config.service,
        ));
        let prepared = self.encode(
            stats.emitted,
            service_kit::now_ms(),
            String::new(),
            String::new(),
            body,
            0,
        );
        if js.client().connection_state() != State::Connected {
            return false;
        }
        let publish = PublishMessage::build()
            .payload(prepared.payload)
            .message_id(&prepared.event_id);
        let subject = self.subjects[BodyKind::ProducerStats as usize].clone();
        let sent = tokio::time::timeout_at(until, async {
            js.send_publish(subject, publish).await?.await
        })
        .await
        .unwrap_or_else(|_| Err(PublishError::new(PublishErrorKind::TimedOut)));
        match sent {
            Ok(_) => {
                self.ledger.jetstream.acked();
                true
            }
            Err(err) => {
                self.publish_failed(ensure_error, &err);
                false
            }
        }
    }

    /// Counts what is left as dropped, sends the final stats, reports.
    async fn finish(mut self, mut flow: Flow, js: Option<Context>) {
        let deadline = flow.deadline.unwrap_or_else(Instant::now);
        self.rx.close();
        let mut left = (flow.pending.len() + flow.in_flight.len()) as u64;
        flow.pending.clear();
        flow.in_flight.clear();
        while let Ok(queued) = self.rx.try_recv() {
            drop(queued);
            left += 1;
        }
        if left > 0 {
            tracing::warn!(
                left,
                "telemetry shutdown deadline passed; events left unpublished"
            );
            self.ledger.drop_events(DropReason::ShutdownDeadline, left);
        }
        self.ledger.flush_queue_full_warning(true);
        let final_stats_sent = match &js {
            Some(js) if Instant::now() < deadline => {
                self.publish_stats(js, flow.ensure_error.as_deref(), true, deadline)
                    .await
            }
            _ => false,
        };
        let stats = self.ledger.snapshot();
        let report = ShutdownReport {
            emitted: stats.emitted,
            published: stats.published,
            dropped: stats.dropped,
            left,
            final_stats_sent,
        };
        if let Some(done) = self.done.take() {
            let _ = done.send(report);
        }
        if let Some(js) = js {
            // Push out anything buffered; bounded so a dead broker cannot hold us.
            let _ = tokio::time::timeout(Duration::from_millis(100), js.client().flush()).await;
        }
    }
}
