//! What the pipeline's processes share that is not telemetry: how to reach NATS, how a
//! wrong setting is reported, the wall clock, log set-up, and the HTTP edge.
//!
//! # Layering
//! `telemetry-proto` (the wire contract) is at the bottom; this crate sits on it; the
//! `telemetry` SDK, the renderer and the collector sit on this crate. The SDK needs a
//! NATS connection ([`nats::NatsConfig`], [`nats::connect_in_background`]), the one
//! [`ConfigError`] and [`now_ms`], so they live here rather than in the SDK: the
//! collector, which never produces telemetry, then depends on this crate and not on
//! the SDK. What only binaries need sits behind features the SDK leaves off, so a
//! library user of the SDK compiles no clap, axum or hyper:
//!
//! - `cli`: the clap flags shared by both services ([`cli::NatsArgs`],
//!   [`cli::LogFormat`]) and [`cli::init_logs`].
//! - `http-server` (implies `cli`): [`http_server`], the HTTP/1.1 edge with header,
//!   body and idle timeouts and a connection bound, and its flags.
//!
//! # Layout
//! - [`error`]: [`ConfigError`] (one line naming the setting) and [`error_line`].
//! - [`clock`]: [`now_ms`], unix milliseconds from the coarse realtime clock.
//! - [`nats`]: [`NatsConfig`] and building a client from it.
//! - [`cli`] (feature `cli`): flags and logs.
//! - [`http_server`] (feature `http-server`): `serve` and `HttpLimits`.
//! - [`request_id`] (feature `http-server`): both services' `x-request-id` and request
//!   spans.

#[cfg(feature = "cli")]
pub mod cli;
pub mod clock;
pub mod error;
#[cfg(feature = "http-server")]
pub mod http_server;
pub mod nats;
#[cfg(feature = "http-server")]
pub mod request_id;

pub use clock::now_ms;
pub use error::{error_line, ConfigError};
pub use nats::NatsConfig;
/// Re-exported so the services and the SDK name one `SecretString` (and its
/// `ExposeSecret`) without each depending on `secrecy` for the type alone.
pub use secrecy::{ExposeSecret, SecretString};
