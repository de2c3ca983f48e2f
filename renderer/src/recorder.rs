//! Where a render's monitoring records go.
//!
//! Production uses the telemetry SDK ([`telemetry::Telemetry`] implements
//! [`RunRecorder`]): every call enqueues and returns at once. The trait is async so the
//! benchmark can plug in the original design — awaiting a database write inside the
//! request — and measure the difference on the same pipeline. Recording never fails a
//! render: an implementation logs (and counts) its own errors.

use telemetry::{CompleteRun, EmitEvent, StartRun, Telemetry, VariantResultRecord, VariantStart};

/// The seed's telemetry calls, as the render pipeline makes them.
#[async_trait::async_trait]
pub trait RunRecorder: Send + Sync + 'static {
    /// `emit`: a typed event.
    async fn emit(&self, event: EmitEvent);
    /// `startRun`.
    async fn start_run(&self, run: StartRun);
    /// `recordVariantStart`.
    async fn record_variant_start(&self, start: VariantStart);
    /// `recordVariantResult`.
    async fn record_variant_result(&self, result: VariantResultRecord);
    /// `completeRun`.
    async fn complete_run(&self, complete: CompleteRun);
}

/// Logs a refused call at debug: the SDK already counted it in its ledger (visible in
/// `/metrics` and in `ProducerStats`), so it is not lost silently.
fn log(call: &'static str, result: Result<(), telemetry::EmitError>) {
    if let Err(err) = result {
        tracing::debug!(call, error = %err, "telemetry call refused");
    }
}

#[async_trait::async_trait]
impl RunRecorder for Telemetry {
    async fn emit(&self, event: EmitEvent) {
        log("emit", Telemetry::emit(self, event));
    }

    async fn start_run(&self, run: StartRun) {
        log("start_run", Telemetry::start_run(self, run));
    }

    async fn record_variant_start(&self, start: VariantStart) {
        log(
            "record_variant_start",
            Telemetry::record_variant_start(self, start),
        );
    }

    async fn record_variant_result(&self, result: VariantResultRecord) {
        log(
            "record_variant_result",
            Telemetry::record_variant_result(self, result),
        );
    }

    async fn complete_run(&self, complete: CompleteRun) {
        log("complete_run", Telemetry::complete_run(self, complete));
    }
}
