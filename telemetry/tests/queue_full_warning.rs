//! A full queue is loud but not noisy: a burst of `queue_full` drops gives one warn
//! line at once, and the drops after it are counted in the next line (on the
//! publisher's stats tick, or at shutdown), never one line per drop.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use telemetry::{
    EmitError, NatsConfig, Telemetry, TelemetryConfig, VariantResultRecord, VariantStatus,
};
use test_support::Isolation;
use tracing::field::{Field, Visit};
use tracing::{span, Event, Level, Metadata, Subscriber};

/// One captured event: its level and fields (`message` included).
#[derive(Debug, Clone)]
struct Line {
    level: Level,
    fields: BTreeMap<String, String>,
}

impl Visit for Line {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.fields
            .insert(field.name().to_owned(), format!("{value:?}"));
    }
}

/// A subscriber that keeps every event, for this thread only (`set_default`).
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<Line>>>);

impl Capture {
    /// The queue-full warnings so far, as (level, dropped since last line, total).
    fn queue_full_lines(&self) -> Vec<(Level, u64, u64)> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|line| {
                line.fields
                    .get("message")
                    .is_some_and(|m| m.starts_with("telemetry queue full"))
            })
            .map(|line| {
                let number = |name: &str| line.fields[name].parse::<u64>().unwrap();
                (
                    line.level,
                    number("dropped_since_last_line"),
                    number("dropped_total"),
                )
            })
            .collect()
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &span::Attributes<'_>) -> span::Id {
        span::Id::from_u64(1)
    }
    fn record(&self, _: &span::Id, _: &span::Record<'_>) {}
    fn record_follows_from(&self, _: &span::Id, _: &span::Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut line = Line {
            level: *event.metadata().level(),
            fields: BTreeMap::new(),
        };
        event.record(&mut line);
        self.0.lock().unwrap().push(line);
    }
    fn enter(&self, _: &span::Id) {}
    fn exit(&self, _: &span::Id) {}
}

fn result(i: usize) -> VariantResultRecord {
    VariantResultRecord {
        run_id: format!("run-{i}"),
        variant_id: "v1".into(),
        shop_id: "demo-shop.myshopify.com".into(),
        request_id: format!("req-{i}"),
        final_prompt_hash: telemetry::hash_prompt("place the sofa by the window"),
        status: VariantStatus::Success,
        latency_ms: 10,
        output_image_key: None,
        output_image_hash: None,
        error_code: None,
        error_message: None,
    }
}

#[tokio::test]
async fn a_burst_of_queue_full_drops_is_one_warn_line_and_the_next_counts_the_rest() {
    let capture = Capture::default();
    // This thread only; the current-thread runtime runs the publisher here too.
    let _guard = tracing::subscriber::set_default(capture.clone());
    let iso = Isolation::new();
    let capacity = 100;
    let telemetry = Telemetry::start(TelemetryConfig {
        nats: NatsConfig {
            url: iso.nats_url.clone(),
            ..Default::default()
        },
        subject_prefix: iso.prefix.clone(),
        stream: iso.stream.clone(),
        stream_max_bytes: Isolation::STREAM_MAX_BYTES,
        service: "warn-test".into(),
        queue_capacity: capacity,
        ..Default::default()
    })
    .unwrap();
    // The publisher cannot run while this loop does not yield: exactly `capacity`
    // calls fit, the other 9,900 are dropped as queue_full.
    let calls = 10_000;
    let mut full = 0;
    for i in 0..calls {
        match telemetry.record_variant_result(result(i)) {
            Ok(()) => {}
            Err(EmitError::QueueFull) => full += 1,
            Err(other) => panic!("unexpected {other}"),
        }
    }
    assert_eq!(full, calls - capacity);
    let dropped = full as u64;
    // One line for the whole burst, at its first drop.
    assert_eq!(capture.queue_full_lines(), vec![(Level::WARN, 1, 1)]);

    // The rest of the burst is counted in the next line (here: at shutdown, which does
    // not wait out the interval).
    let report = telemetry.shutdown(Duration::from_secs(10)).await;
    assert_eq!(report.dropped, dropped);
    assert_eq!(
        capture.queue_full_lines(),
        vec![(Level::WARN, 1, 1), (Level::WARN, dropped - 1, dropped)]
    );
}
