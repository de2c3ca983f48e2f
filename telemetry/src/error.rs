//! Typed errors of the SDK.

/// Why an event was not accepted. Every rejection is also counted in the ledger, so the
/// caller may ignore the error without making the loss invisible.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmitError {
    /// The bounded queue is full (by count or bytes): the broker is slow or unreachable.
    #[error("telemetry queue full; event dropped (counted as queue_full)")]
    QueueFull,
    /// A field is over its named limit (see [`crate::Limits`]).
    #[error(
        "telemetry field `{field}` is {len} bytes, over the {limit}-byte limit; event dropped"
    )]
    TooLarge {
        /// The offending field.
        field: &'static str,
        /// Its size in bytes.
        len: usize,
        /// The limit it exceeded.
        limit: usize,
    },
    /// A required id (run id, variant id) is empty.
    #[error("telemetry field `{0}` is required and was empty; event dropped")]
    MissingField(&'static str),
    /// `shutdown` was called; the handle takes no more events.
    #[error("telemetry is shut down; event dropped")]
    Closed,
}
