//! The renderer's Prometheus metrics, exposed as OpenMetrics text by
//! `prometheus-client`, and the SDK's ledger beside them.
//!
//! Every labelled series is created up front and its counter kept in an array, so
//! counting a request is one atomic add (no label lookup) and `/metrics` shows every
//! outcome from the start, at 0. The SDK's figures are read at each scrape
//! ([`SdkLedger`]): its ledger is the source, not a copy kept here.
//!
//! Names: `prometheus-client` adds `_total` to a counter's samples, so counters are
//! registered without it and no metric has a unit: the sample names stay those of
//! `docs/operations.md`.

use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::{encode_eof, encode_registry};
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use telemetry::StatsSnapshot;

/// Upper bounds (seconds) of the latency histograms: from a fast local composite to a
/// slow image model.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// The content type of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

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

/// A label set of one label.
type Label = [(&'static str, &'static str); 1];

/// Registers a counter family `name` under `registry` with one series per value of
/// `label`, and returns those series' counters in the order of `values`.
fn counters<const N: usize>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    label: &'static str,
    values: [&'static str; N],
) -> [Counter; N] {
    let family = Family::<Label, Counter>::default();
    registry.register(name, help, family.clone());
    values.map(|value| family.get_or_create(&[(label, value)]).clone())
}

/// The renderer's counters.
#[derive(Debug)]
pub struct Metrics {
    /// What `/metrics` encodes (with the SDK's ledger).
    registry: Registry,
    /// By [`RequestOutcome`], in [`RequestOutcome::ALL`]'s order.
    requests: [Counter; RequestOutcome::ALL.len()],
    /// Variants by outcome: success, failed, timeout.
    variants: [Counter; 3],
    /// Runs by status: complete, partial, failed, interrupted.
    runs: [Counter; 4],
    /// Whole-run latency (all variants).
    run_latency: Histogram,
    /// One variant's latency (render and store).
    variant_latency: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        // Help texts without a final period: the registry adds one.
        let requests = counters(
            &mut registry,
            "renderer_requests",
            "Render requests by outcome",
            "outcome",
            RequestOutcome::ALL.map(RequestOutcome::as_str),
        );
        let variants = counters(
            &mut registry,
            "renderer_variants",
            "Rendered variants by status",
            "status",
            ["success", "failed", "timeout"],
        );
        let runs = counters(
            &mut registry,
            "renderer_runs",
            "Finished runs by status",
            "status",
            ["complete", "partial", "failed", "interrupted"],
        );
        let [run_latency, variant_latency] = [
            ("renderer_run_duration_seconds", "Duration of a whole run"),
            (
                "renderer_variant_duration_seconds",
                "Duration of one variant (render and store)",
            ),
        ]
        .map(|(name, help)| {
            let histogram = Histogram::new(LATENCY_BUCKETS);
            registry.register(name, help, histogram.clone());
            histogram
        });
        Self {
            registry,
            requests,
            variants,
            runs,
            run_latency,
            variant_latency,
        }
    }
}

impl Metrics {
    /// Counts a request.
    pub fn request(&self, outcome: RequestOutcome) {
        let index = RequestOutcome::ALL
            .iter()
            .position(|o| *o == outcome)
            .unwrap_or(0);
        self.requests[index].inc();
    }

    /// Counts a variant.
    pub fn variant(&self, outcome: VariantOutcomeKind, latency: Duration) {
        self.variants[outcome as usize].inc();
        self.variant_latency.observe(latency.as_secs_f64());
    }

    /// Counts a variant interrupted at shutdown as failed (its telemetry status), and
    /// leaves its latency out of the histogram: it is not how long a render takes.
    pub fn variant_interrupted(&self) {
        self.variants[VariantOutcomeKind::Failed as usize].inc();
    }

    /// Counts a finished run; an interrupted run's duration is left out of the
    /// histogram (it is where shutdown cut the run, not how long a run takes).
    pub fn run(&self, status: telemetry::RunStatus, latency: Duration) {
        let index = match status {
            telemetry::RunStatus::Partial => 1,
            telemetry::RunStatus::Failed => 2,
            telemetry::RunStatus::Interrupted => 3,
            _ => 0,
        };
        self.runs[index].inc();
        if status != telemetry::RunStatus::Interrupted {
            self.run_latency.observe(latency.as_secs_f64());
        }
    }

    /// The OpenMetrics text exposition ([`CONTENT_TYPE`]), with the SDK's ledger.
    pub fn render(&self, sdk: &StatsSnapshot, telemetry_enabled: bool) -> String {
        let mut ledger = Registry::default();
        ledger.register_collector(Box::new(SdkLedger {
            stats: sdk.clone(),
            enabled: telemetry_enabled,
        }));
        let mut out = String::with_capacity(4096);
        // Writing to a String cannot fail.
        let _ = encode_registry(&mut out, &self.registry)
            .and_then(|()| encode_registry(&mut out, &ledger))
            .and_then(|()| encode_eof(&mut out));
        out
    }
}

/// The SDK's ledger at one scrape, as `telemetry_*` metrics.
#[derive(Debug)]
struct SdkLedger {
    stats: StatsSnapshot,
    enabled: bool,
}

impl Collector for SdkLedger {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let stats = &self.stats;
        // Collectors write their help text as given: with its period.
        let gauges = [
            (
                "telemetry_enabled",
                "Whether telemetry is on.",
                u64::from(self.enabled),
            ),
            (
                "telemetry_queue_depth",
                "Events queued or awaiting their ack.",
                stats.queue_depth,
            ),
            (
                "telemetry_connected",
                "Whether the SDK's NATS connection is up.",
                u64::from(stats.connected),
            ),
            (
                "telemetry_jetstream_up",
                "Whether JetStream acknowledged the SDK's last publish.",
                u64::from(stats.jetstream.is_available()),
            ),
        ];
        for (name, help, value) in gauges {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        let counters = [
            ("telemetry_emitted", "Telemetry calls made.", stats.emitted),
            (
                "telemetry_published",
                "Events acknowledged by JetStream.",
                stats.published,
            ),
            (
                "telemetry_dropped",
                "Events dropped (all reasons).",
                stats.dropped,
            ),
            (
                "telemetry_publish_failures",
                "Failed publish attempts (retried).",
                stats.publish_failures,
            ),
        ];
        for (name, help, value) in counters {
            let counter = ConstCounter::new(value);
            counter.encode(encoder.encode_descriptor(
                name,
                help,
                None,
                counter.metric_type(),
            )?)?;
        }
        let mut by_reason = encoder.encode_descriptor(
            "telemetry_dropped_by_reason",
            "Events dropped, by reason.",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for reason in telemetry::DropReason::ALL {
            let labels = [("reason", reason.as_str())];
            ConstCounter::new(stats.dropped_for(reason))
                .encode(by_reason.encode_family(&labels)?)?;
        }
        Ok(())
    }
}
