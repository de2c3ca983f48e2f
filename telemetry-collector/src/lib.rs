//! `telemetry-collector`: drains render telemetry (`telemetry.v1` envelopes on NATS
//! JetStream) into SQLite or Postgres, exactly-once in effect, and serves health,
//! metrics and a JSON API over what it stored.
//!
//! Each batch of messages from a durable pull consumer is parsed at the edge
//! ([`domain`]), written in ONE transaction ([`store`]) and acked only after the commit
//! ([`ingest`]). Writes are idempotent and order-free, so redelivery, duplicates and
//! any arrival order give the same rows; several collectors may share the consumer.
//! A database outage is waited out (nothing acked, `/readyz` 503), never dead-lettered.
//!
//! Starting one (what tests and the renderer's end-to-end test do):
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use telemetry_collector::{Application, Settings};
//! // NATS URL, subject prefix, stream, database; HTTP on 127.0.0.1:0 by default.
//! let settings = Settings::new("nats://127.0.0.1:4222", "telemetry", "TELEMETRY",
//!                              "sqlite:///tmp/telemetry.db");
//! let app = Application::build(settings).await?;
//! let port = app.port(); // GET http://127.0.0.1:{port}/api/v1/runs/{id}
//! let running = app.spawn(); // or `app.run_until_stopped().await` with a ShutdownHandle
//! // ...
//! running.stop().await; // finishes the batch in flight
//! # let _ = port; Ok(()) }
//! ```
//!
//! # Layout
//! - [`config`]: [`Settings`], the CLI ([`config::Cli`]) and the named defaults.
//! - [`domain`]: the parse edge, protobuf → validated [`domain::Fact`] or dead letter.
//! - [`store`]: the [`store::Store`] trait, the tables described as data
//!   ([`store::schema`]), the reads and the order-free projection both dialects share,
//!   and the `sqlite` and `postgres` batch writes.
//! - [`ingest`]: consumer, batching, commit-then-ack, retry on database errors.
//! - [`http`]: `/healthz`, `/readyz`, `/metrics`, merging [`monitor`].
//! - [`monitor`]: `/monitor` pages, `/api/v1/...` JSON, SSE, token access.
//! - [`metrics`]: counters and readiness state; [`backlog`] reads the consumer's
//!   backlog from the broker into it.
//! - [`app`]: [`Application`]: build, run, shut down.
//! - operations: [`retention`] (`prune`, `COLLECTOR_RETENTION`), [`replay`] (rebuild
//!   from the stream), [`dead_letters`] (list, show, requeue, purge),
//!   [`stream_admin`] (the stream's info, create, update to the configured spec),
//!   [`rollups_admin`] (check the overview's rollups against a recount, recount).

pub mod app;
pub mod backlog;
pub mod config;
pub mod dead_letters;
pub mod domain;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod monitor;
pub mod replay;
pub mod retention;
pub mod rollups_admin;
pub mod store;
pub mod stream_admin;

pub use app::{Application, RunningCollector, ShutdownHandle, StartError};
pub use config::Settings;
