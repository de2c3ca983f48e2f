//! The render telemetry SDK: the Rust counterpart of the original app's
//! `~/services/telemetry` module (`startRun`, `recordVariantStart`,
//! `recordVariantResult`, `completeRun`, `emit`, `hashPrompt`).
//!
//! Every call is a plain, non-async function that checks sizes, stamps the event
//! (time, producer sequence) and `try_send`s it into a bounded queue. It never waits on
//! the network, on a lock held across I/O, or on a full queue: a render must not get
//! slower because the broker is slow or down. A background task publishes the queue to
//! NATS JetStream with many publishes in flight (`Nats-Msg-Id` = event id, so retries are
//! deduplicated by the broker) and retries failures with backoff while holding the event.
//!
//! Loss is never silent: when the queue is full the event is dropped and counted by
//! reason (and logged at warn with the count, at most one line per
//! [`ledger::QUEUE_FULL_WARN_INTERVAL`]), and a `ProducerStats` message (emitted,
//! published, dropped by reason) goes out periodically and at shutdown. The collector
//! keeps the last one per producer: the loss ledger.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use telemetry::{EmitEvent, EventSource, EventType, Telemetry, TelemetryConfig};
//! let telemetry = Telemetry::start(TelemetryConfig::default())?;
//! telemetry.emit(EmitEvent {
//!     shop_id: "shop.myshopify.com".into(),
//!     request_id: "req-1".into(),
//!     run_id: String::new(),
//!     source: EventSource::AppProxy,
//!     event_type: EventType::SfRenderRequested,
//!     payload_json: r#"{"productId":"p1"}"#.into(),
//! })?;
//! let report = telemetry.shutdown(std::time::Duration::from_secs(5)).await;
//! assert_eq!(report.left, 0);
//! # Ok(()) }
//! ```
//!
//! # Layout
//! - [`config`]: [`TelemetryConfig`] and its named defaults; [`NatsConfig`] and
//!   [`ConfigError`] are `service-kit`'s, re-exported because the config holds them.
//! - [`record`]: the call inputs ([`StartRun`], [`VariantResultRecord`], ...) and [`hash_prompt`].
//! - [`ledger`]: the counters behind `ProducerStats`, [`StatsSnapshot`], and
//!   [`JetStreamState`] (whether JetStream takes the events, from the ack outcomes).
//! - [`handle`]: [`Telemetry`], the cheap `Clone` handle the calls are made on.
//! - `publisher`: the background task that owns the NATS connection (made by
//!   `service_kit::nats`, the same code the collector connects with).

pub mod config;
pub mod error;
/// Hooks for the shared envelope fixtures and the cross-SDK test (`fixture::Call`):
/// not an API. See the module's own documentation.
#[doc(hidden)]
pub mod fixture;
pub mod handle;
pub mod ledger;
mod publisher;
pub mod record;

pub use config::{Limits, TelemetryConfig};
pub use error::EmitError;
pub use handle::{ShutdownReport, Telemetry};
pub use ledger::{DropReason, JetStreamState, StatsSnapshot};
pub use record::{
    hash_prompt, CompleteRun, EmitEvent, ImageInfo, StartRun, VariantResultRecord, VariantStart,
};
pub use service_kit::{ConfigError, NatsConfig};
pub use telemetry_proto::v1::{
    ErrorCode, EventSource, EventType, ImageMeta, RunStatus, VariantStatus,
};
