//! A run's variant timeline, as the run page draws it: one bar per variant from its
//! start to its result, on a scale from the run's start to its last known moment, and
//! one for the run itself. Failures and timeouts are marked by colour and by words
//! (status, error code), so the bar is never the only sign.
//!
//! The bars are SVG rectangles (`x`, `width` are attributes: the CSP allows no inline
//! styles), one small SVG per row stretched to the row's width, with the text beside
//! it in HTML so that it wraps on a phone instead of shrinking.

use crate::store::stale::RUNNING;
use crate::store::{RunDetail, StaleCutoff, VariantRecord};

use super::super::views::{fmt_ms, status_class};
use super::Linked;

/// Width of a bar's SVG in its own units (its `viewBox`); stretched to the row.
pub const SCALE: i64 = 1000;

/// One bar of the timeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bar {
    /// `run` or the variant id.
    pub label: String,
    /// `success`, `failed`, `timeout`, `running`, `stale` (no result in a stale run),
    /// or the run's status.
    pub status: String,
    /// The status badge's class ([`status_class`]).
    pub badge: &'static str,
    /// CSS class of the bar: `bar-ok`, `bar-failed`, `bar-timeout`, `bar-running`,
    /// `bar-stale`, `bar-other`.
    pub class: &'static str,
    /// A sign beside the status of what went wrong, not by colour alone: `✕`
    /// (failed), `⏱` (timeout), `◐` (partial), `⚠` (stale); empty otherwise.
    pub mark: &'static str,
    /// The error code of a failed or timed-out variant (`provider_error`), linking to
    /// the runs with it.
    pub error_code: Linked,
    /// `+12 ms → +850 ms` (from the run's start).
    pub span: String,
    /// `838 ms`.
    pub duration: String,
    /// Start and width in [`SCALE`] units; a bar is at least 2 wide to be seen.
    pub x: i64,
    pub width: i64,
}

/// The timeline of a run: its bars and the scale's end.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timeline {
    pub bars: Vec<Bar>,
    /// The scale's end (`1.2 s`), from the run's start.
    pub end: String,
}

/// `(class, mark)` of a bar by status.
fn look(status: &str) -> (&'static str, &'static str) {
    match status {
        "success" | "complete" => ("bar-ok", ""),
        "partial" => ("bar-timeout", "◐"),
        "failed" | "interrupted" => ("bar-failed", "✕"),
        "timeout" => ("bar-timeout", "⏱"),
        RUNNING => ("bar-running", ""),
        "stale" => ("bar-stale", "⚠"),
        _ => ("bar-other", ""),
    }
}

/// A variant's `(start, end)` as far as known: the start, or the result time minus
/// its latency; the result time, or `None` while it has none.
fn variant_span(v: &VariantRecord) -> Option<(i64, Option<i64>)> {
    let start = v
        .started_at
        .or_else(|| Some(v.finished_at? - v.latency_ms.unwrap_or(0)))?;
    Some((start, v.finished_at))
}

impl Timeline {
    /// The timeline of `detail`, as of `stale`; `last` is the time of its last event
    /// (where a bar without an end stops).
    pub fn new(detail: &RunDetail, stale: StaleCutoff, last: i64) -> Self {
        let run = &detail.run;
        let origin = run.started_at;
        let run_end = run
            .completed_at
            .or_else(|| run.total_duration_ms.map(|d| origin + d));
        let ends = detail
            .variants
            .iter()
            .filter_map(variant_span)
            .flat_map(|(start, end)| [Some(start), end])
            .chain([run_end, Some(last)])
            .flatten();
        let scale_end = ends.fold(origin, i64::max);
        let span = (scale_end - origin).max(1);
        let place = |at: i64| ((at - origin).clamp(0, span) * SCALE / span).clamp(0, SCALE);
        let bar = |label: String, status: &str, start: i64, end: Option<i64>, code: String| {
            let (class, mark) = look(status);
            let stop = end.unwrap_or(scale_end);
            let x = place(start).min(SCALE - 2);
            Bar {
                label,
                status: status.to_owned(),
                badge: status_class(status),
                class,
                mark,
                error_code: Linked::runs("error_code", &code),
                span: format!(
                    "+{} → {}",
                    fmt_ms(Some((start - origin).max(0))),
                    end.map(|e| format!("+{}", fmt_ms(Some((e - origin).max(0)))))
                        .unwrap_or_else(|| "…".to_owned())
                ),
                duration: end.map(|e| fmt_ms(Some(e - start))).unwrap_or_default(),
                x,
                width: (place(stop) - x).max(2),
            }
        };
        let run_status = stale.shown(&run.status, run.started_at);
        let mut bars = vec![bar(
            "run".to_owned(),
            run_status,
            origin,
            run_end,
            String::new(),
        )];
        let run_is_stale = stale.is_stale(&run.status, run.started_at);
        for v in &detail.variants {
            let Some((start, end)) = variant_span(v) else {
                continue;
            };
            // A variant still without its result in a run that is stale will not get
            // one: shown as such, not as running.
            let status = if v.status == RUNNING && run_is_stale {
                "stale"
            } else {
                v.status.as_str()
            };
            let code = v
                .error_code
                .clone()
                .filter(|c| c != "unspecified" && status != "success")
                .unwrap_or_default();
            bars.push(bar(v.variant_id.clone(), status, start, end, code));
        }
        Self {
            bars,
            end: fmt_ms(Some(span)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::RunRecord;

    fn variant(id: &str, status: &str, start: i64, end: Option<i64>, code: &str) -> VariantRecord {
        VariantRecord {
            run_id: "r".into(),
            variant_id: id.into(),
            shop_id: "s".into(),
            request_id: "q".into(),
            started_at: Some(start),
            started_event_id: None,
            status: status.into(),
            final_prompt_hash: None,
            latency_ms: end.map(|e| e - start),
            output_image_key: None,
            output_image_hash: None,
            error_code: Some(code.into()),
            error_message: None,
            finished_at: end,
            result_event_id: None,
            error_group: None,
        }
    }

    #[test]
    fn bars_run_from_each_start_to_its_result_and_failures_say_so() {
        let run = RunRecord {
            run_id: "r".into(),
            started_at: 1_000,
            status: "partial".into(),
            completed_at: Some(3_000),
            ..Default::default()
        };
        let detail = RunDetail {
            run,
            variants: vec![
                variant("a", "success", 1_000, Some(2_000), "unspecified"),
                variant("b", "failed", 1_500, Some(1_600), "provider_error"),
                variant("c", "timeout", 1_000, Some(3_000), "timeout"),
            ],
            events: vec![],
        };
        let timeline = Timeline::new(&detail, StaleCutoff(0), 3_000);
        assert_eq!(timeline.end, "2.0 s");
        let bars: Vec<(&str, i64, i64, &str, &str)> = timeline
            .bars
            .iter()
            .map(|b| {
                (
                    b.label.as_str(),
                    b.x,
                    b.width,
                    b.class,
                    b.error_code.text.as_str(),
                )
            })
            .collect();
        assert_eq!(
            bars,
            [
                ("run", 0, 1000, "bar-timeout", ""),
                ("a", 0, 500, "bar-ok", ""),
                ("b", 250, 50, "bar-failed", "provider_error"),
                ("c", 0, 1000, "bar-timeout", "timeout"),
            ]
        );
        assert_eq!(timeline.bars[2].mark, "✕");
        assert_eq!(
            timeline.bars[2].error_code.href.as_deref(),
            Some("/monitor?error_code=provider_error")
        );
        assert_eq!(timeline.bars[2].span, "+500 ms → +600 ms");
        assert_eq!(timeline.bars[2].duration, "100 ms");
    }

    #[test]
    fn a_variant_without_result_reaches_the_last_event_and_is_stale_with_its_run() {
        let run = RunRecord {
            run_id: "r".into(),
            started_at: 1_000,
            status: RUNNING.into(),
            ..Default::default()
        };
        let detail = RunDetail {
            run,
            variants: vec![variant("a", RUNNING, 1_100, None, "")],
            events: vec![],
        };
        let live = Timeline::new(&detail, StaleCutoff(0), 2_000);
        assert_eq!(live.bars[1].class, "bar-running");
        assert_eq!((live.bars[1].x, live.bars[1].width), (100, 900));
        assert_eq!(live.bars[1].span, "+100 ms → …");
        let stale = Timeline::new(&detail, StaleCutoff(5_000), 2_000);
        assert_eq!(stale.bars[0].status, "stale");
        assert_eq!(
            (stale.bars[1].status.as_str(), stale.bars[1].mark),
            ("stale", "⚠")
        );
    }
}
