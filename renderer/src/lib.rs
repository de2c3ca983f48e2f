//! The See It Now renderer: a storefront asks, through Shopify's app proxy, for its
//! product placed into a photo of the shopper's room, in several variants (one per
//! prompt of a prompt pack). The renderer checks the app-proxy signature, renders each
//! variant with an image provider, stores the images, and answers with their URLs.
//!
//! Monitoring is the telemetry SDK's job: the render path only enqueues (`emit`,
//! `start_run`, `record_variant_start`, `record_variant_result`, `complete_run`, exactly
//! the seed's step 12) and never waits on a broker or a database. The renderer has no
//! database driver at all (a test checks its dependency tree).
//!
//! # Layout
//! - [`config`]: flags, environment variables, named defaults, checked [`Settings`].
//! - [`startup`]: [`Application`]: bind, serve, graceful shutdown that waits for the
//!   renders in progress (interrupting those past the render drain deadline), then
//!   flushes telemetry.
//! - [`lifecycle`]: the run tasks in progress, drained and interrupted at shutdown.
//! - [`http`]: the routes (render, images, health, metrics).
//! - [`signature`]: Shopify app-proxy signature verification.
//! - [`input`]: the request body, checked at the edge (images decoded, limits applied).
//! - [`render`]: the instrumented pipeline (concurrency, per-variant timeout), calling
//!   the SDK directly.
//! - [`providers`]: the image models: [`providers::local`] and [`providers::gemini`].
//! - [`store`]: the local image store and its key rules.
//! - [`metrics`]: Prometheus counters.

pub mod config;
pub mod http;
pub mod input;
pub mod lifecycle;
pub mod metrics;
pub mod providers;
pub mod render;
pub mod signature;
pub mod startup;
pub mod store;

pub use config::{Cli, Settings};
pub use startup::{Application, StartupError};
