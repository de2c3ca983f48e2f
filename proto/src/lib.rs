//! The wire contract of the render telemetry pipeline.
//!
//! Producers (the `telemetry` SDK inside the renderer) and the `telemetry-collector`
//! both depend on this crate, so they cannot disagree on:
//!
//! - the protobuf messages ([`v1`], generated from `proto/telemetry/v1/telemetry.proto`),
//! - the subject each body kind is published on ([`Subjects`]),
//! - the JetStream stream definition ([`StreamSpec`]).
//!
//! # Layout
//! - [`v1`]: generated prost types (`Envelope`, `RunStarted`, ...).
//! - [`subjects`]: `{prefix}.v1.run.started` and friends.
//! - [`stream`]: the stream's name, subjects, storage, duplicate window and max age.

pub mod stream;
pub mod subjects;

/// Generated protobuf types of package `telemetry.v1`.
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/telemetry.v1.rs"));
}

pub use stream::StreamSpec;
pub use subjects::{BodyKind, Subjects};
