//! Prometheus counters of the renderer, written by hand: a few atomics and fixed
//! histogram buckets are all `/metrics` needs, and no registry crate is pulled in.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use telemetry::StatsSnapshot;

/// Upper bounds (seconds) of the latency histograms: from a fast local composite to a
/// slow image model.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// A latency histogram with [`LATENCY_BUCKETS`].
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        for (bound, bucket) in LATENCY_BUCKETS.iter().zip(&self.buckets) {
            if seconds <= *bound {
                bucket.fetch_add(1, Relaxed);
            }
        }
        self.count.fetch_add(1, Relaxed);
        self.sum_micros
            .fetch_add(elapsed.as_micros() as u64, Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (bound, bucket) in LATENCY_BUCKETS.iter().zip(&self.buckets) {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{bound}\"}} {}",
                bucket.load(Relaxed)
            );
        }
        let count = self.count.load(Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.sum_micros.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count {count}");
    }
}

/// How a render request ended, for `renderer_requests_total{outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestOutcome {
    /// A run was made (whatever its status).
    Rendered,
    /// 400: bad input.
    BadRequest,
    /// 401: signature missing or wrong.
    Unauthorized,
    /// 413: body over the limit.
    TooLarge,
    /// 408: the body did not arrive within `HTTP_BODY_TIMEOUT_MS`.
    BodyTimeout,
    /// 503: no render slot came free within the queue wait.
    Overloaded,
    /// 500.
    Error,
}

impl RequestOutcome {
    const ALL: [Self; 7] = [
        Self::Rendered,
        Self::BadRequest,
        Self::Unauthorized,
        Self::TooLarge,
        Self::BodyTimeout,
        Self::Overloaded,
        Self::Error,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Self::Rendered => "rendered",
            Self::BadRequest => "bad_request",
            Self::Unauthorized => "unauthorized",
            Self::TooLarge => "too_large",
            Self::BodyTimeout => "body_timeout",
            Self::Overloaded => "overloaded",
            Self::Error => "error",
        }
    }
}

/// The renderer's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: [AtomicU64; RequestOutcome::ALL.len()],
    /// Variants by outcome: success, failed, timeout.
    variants: [AtomicU64; 3],
    /// Runs by status: complete, partial, failed.
    runs: [AtomicU64; 3],
    /// Whole-run latency (all variants).
    pub run_latency: Histogram,
    /// One variant's latency (render and store).
    pub variant_latency: Histogram,
}

/// Variant outcomes, indexing [`Metrics`]'s variant counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VariantOutcomeKind {
    /// Rendered and stored.
    Success = 0,
    /// Provider or storage error.
    Failed = 1,
    /// Over the per-variant timeout.
    Timeout = 2,
}

impl Metrics {
    /// Counts a request.
    pub fn request(&self, outcome: RequestOutcome) {
        let index = RequestOutcome::ALL
            .iter()
            .position(|o| *o == outcome)
            .unwrap_or(0);
        self.requests[index].fetch_add(1, Relaxed);
    }

    /// Counts a variant.
    pub fn variant(&self, outcome: VariantOutcomeKind, latency: Duration) {
        self.variants[outcome as usize].fetch_add(1, Relaxed);
        self.variant_latency.observe(latency);
    }

    /// Counts a finished run (`status` 0 complete, 1 partial, 2 failed).
    pub fn run(&self, status: telemetry::RunStatus, latency: Duration) {
        let index = match status {
            telemetry::RunStatus::Partial => 1,
            telemetry::RunStatus::Failed => 2,
            _ => 0,
        };
        self.runs[index].fetch_add(1, Relaxed);
        self.run_latency.observe(latency);
    }

    /// The Prometheus text exposition, with the SDK's ledger.
    pub fn render(&self, sdk: &StatsSnapshot, telemetry_enabled: bool) -> String {
        let mut out = String::with_capacity(4096);
        let _ = writeln!(
            out,
            "# HELP renderer_requests_total Render requests by outcome.\n\
             # TYPE renderer_requests_total counter"
        );
        for (outcome, count) in RequestOutcome::ALL.iter().zip(&self.requests) {
            let _ = writeln!(
                out,
                "renderer_requests_total{{outcome=\"{}\"}} {}",
                outcome.as_str(),
                count.load(Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP renderer_variants_total Rendered variants by status.\n\
             # TYPE renderer_variants_total counter"
        );
        for (status, count) in ["success", "failed", "timeout"].iter().zip(&self.variants) {
            let _ = writeln!(
                out,
                "renderer_variants_total{{status=\"{status}\"}} {}",
                count.load(Relaxed)
            );
        }
        let _ = writeln!(
            out,
            "# HELP renderer_runs_total Finished runs by status.\n\
             # TYPE renderer_runs_total counter"
        );
        for (status, count) in ["complete", "partial", "failed"].iter().zip(&self.runs) {
            let _ = writeln!(
                out,
                "renderer_runs_total{{status=\"{status}\"}} {}",
                count.load(Relaxed)
            );
        }
        self.run_latency.render(
            &mut out,
            "renderer_run_duration_seconds",
            "Duration of a whole run.",
        );
        self.variant_latency.render(
            &mut out,
            "renderer_variant_duration_seconds",
            "Duration of one variant (render and store).",
        );
        let gauges = [
            (
                "telemetry_enabled",
                "Whether telemetry is on.",
                u64::from(telemetry_enabled),
                "gauge",
            ),
            (
                "telemetry_emitted_total",
                "Telemetry calls made.",
                sdk.emitted,
                "counter",
            ),
            (
                "telemetry_published_total",
                "Events acknowledged by JetStream.",
                sdk.published,
                "counter",
            ),
            (
                "telemetry_dropped_total",
                "Events dropped (all reasons).",
                sdk.dropped,
                "counter",
            ),
            (
                "telemetry_publish_failures_total",
                "Failed publish attempts (retried).",
                sdk.publish_failures,
                "counter",
            ),
            (
                "telemetry_queue_depth",
                "Events queued or awaiting their ack.",
                sdk.queue_depth,
                "gauge",
            ),
            (
                "telemetry_connected",
                "Whether the SDK's NATS connection is up.",
                u64::from(sdk.connected),
                "gauge",
            ),
        ];
        for (name, help, value, kind) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP telemetry_dropped_by_reason_total Events dropped, by reason.\n\
             # TYPE telemetry_dropped_by_reason_total counter"
        );
        for reason in telemetry::DropReason::ALL {
            let _ = writeln!(
                out,
                "telemetry_dropped_by_reason_total{{reason=\"{}\"}} {}",
                reason.as_str(),
                sdk.dropped_for(reason)
            );
        }
        out
    }
}
