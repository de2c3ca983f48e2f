//! Rows as the pages show them: times in UTC, durations, status classes from a fixed
//! list, links built from fixed prefixes and percent-encoded values, JSON pretty-printed
//! (dead letters and producers: [`super::ledger`]). Everything here is plain text; the
//! templates escape it.

use crate::store::{EventRecord, RunDetail, RunRecord, VariantRecord};

use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::OffsetDateTime;

use super::params::path_segment;

/// Characters of an event payload shown in a list (the run page shows it whole).
pub const PAYLOAD_PREVIEW_CHARS: usize = 160;

/// How [`fmt_time`] shows a time: `2026-11-29 13:45:07.123`.
const SHOWN: &[BorrowedFormatItem<'_>] =
    format_description!("[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:3]");

/// `2026-11-29 13:45:07.123` (UTC). Producers' clocks are not trusted, so a time
/// outside the years -9999 to 9999 (the database holds any `i64`) shows as unix ms.
pub fn fmt_time(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|at| at.format(SHOWN).ok())
        .unwrap_or_else(|| ms.to_string())
}

/// `850 ms`, `12.3 s`, or empty.
pub fn fmt_ms(ms: Option<i64>) -> String {
    match ms {
        None => String::new(),
        Some(ms) if ms < 1000 => format!("{ms} ms"),
        Some(ms) => format!("{:.1} s", ms as f64 / 1000.0),
    }
}

pub(crate) fn opt(value: &Option<String>) -> String {
    value.clone().unwrap_or_default()
}

pub(crate) fn num(value: Option<i64>) -> String {
    value.map(|v| v.to_string()).unwrap_or_default()
}

/// A CSS class for a status, from a fixed list (never the stored text itself).
pub fn status_class(status: &str) -> &'static str {
    match status {
        "complete" | "success" => "st-ok",
        "partial" => "st-partial",
        "failed" => "st-failed",
        "timeout" => "st-timeout",
        "running" => "st-running",
        _ => "st-other",
    }
}

/// `/monitor/runs/{id}`.
pub fn run_href(run_id: &str) -> String {
    format!("/monitor/runs/{}", path_segment(run_id))
}

/// JSON pretty-printed, or the text as stored when it does not parse.
pub fn pretty_json(text: &Option<String>) -> String {
    match text {
        None => String::new(),
        Some(text) => serde_json::from_str::<serde_json::Value>(text)
            .ok()
            .and_then(|v| serde_json::to_string_pretty(&v).ok())
            .unwrap_or_else(|| text.clone()),
    }
}

/// A run in the list.
#[derive(Debug, Clone)]
pub struct RunRow {
    pub run_id: String,
    pub href: String,
    pub time: String,
    pub shop: String,
    pub request_id: String,
    pub status: String,
    pub status_class: &'static str,
    pub model: String,
    pub pack: String,
    pub success: String,
    pub failed: String,
    pub timeout: String,
    pub duration: String,
}

impl From<&RunRecord> for RunRow {
    fn from(run: &RunRecord) -> Self {
        Self {
            run_id: run.run_id.clone(),
            href: run_href(&run.run_id),
            time: fmt_time(run.started_at),
            shop: run.shop_id.clone(),
            request_id: run.request_id.clone(),
            status: run.status.clone(),
            status_class: status_class(&run.status),
            model: opt(&run.model),
            pack: opt(&run.prompt_pack_version),
            success: num(run.success_count),
            failed: num(run.fail_count),
            timeout: num(run.timeout_count),
            duration: fmt_ms(run.total_duration_ms),
        }
    }
}

/// A variant on the run page.
#[derive(Debug, Clone)]
pub struct VariantRow {
    pub variant_id: String,
    pub status: String,
    pub status_class: &'static str,
    pub latency: String,
    pub error_code: String,
    pub error_message: String,
    pub prompt_hash: String,
    pub image_key: String,
    pub image_hash: String,
    /// `{image base}/{key}`, each key segment percent-encoded.
    pub image_url: Option<String>,
}

impl VariantRow {
    pub fn new(variant: &VariantRecord, image_base_url: Option<&str>) -> Self {
        let key = opt(&variant.output_image_key);
        let image_url = match (image_base_url, key.is_empty()) {
            (Some(base), false) => {
                let path: Vec<String> = key.split('/').map(path_segment).collect();
                Some(format!("{base}/{}", path.join("/")))
            }
            _ => None,
        };
        Self {
            variant_id: variant.variant_id.clone(),
            status: variant.status.clone(),
            status_class: status_class(&variant.status),
            latency: fmt_ms(variant.latency_ms),
            // `unspecified` is the wire's "no error".
            error_code: variant
                .error_code
                .clone()
                .filter(|code| code != "unspecified")
                .unwrap_or_default(),
            error_message: opt(&variant.error_message),
            prompt_hash: opt(&variant.final_prompt_hash),
            image_key: key,
            image_hash: opt(&variant.output_image_hash),
            image_url,
        }
    }
}

/// An event in a list or on a run's timeline.
#[derive(Debug, Clone)]
pub struct EventRow {
    pub event_id: String,
    pub time: String,
    /// Since the first event of the timeline (`+120 ms`).
    pub offset: String,
    pub kind: String,
    pub event_type: String,
    pub source: String,
    pub shop: String,
    pub request_id: String,
    pub request_href: String,
    pub run_href: Option<String>,
    pub variant_id: String,
    pub producer: String,
    pub payload: String,
}

impl EventRow {
    pub fn new(event: &EventRecord, origin: Option<i64>, full_payload: bool) -> Self {
        let mut payload = event.payload.clone().unwrap_or_default();
        if !full_payload && payload.chars().count() > PAYLOAD_PREVIEW_CHARS {
            payload = payload
                .chars()
                .take(PAYLOAD_PREVIEW_CHARS)
                .collect::<String>()
                + "…";
        }
        let request_query = form_urlencoded::Serializer::new(String::new())
            .append_pair("request_id", &event.request_id)
            .finish();
        Self {
            event_id: event.event_id.clone(),
            time: fmt_time(event.occurred_at),
            offset: origin
                .map(|o| format!("+{}", fmt_ms(Some(event.occurred_at - o))))
                .unwrap_or_default(),
            kind: event.kind.clone(),
            event_type: event.event_type.clone(),
            source: opt(&event.source),
            shop: event.shop_id.clone(),
            request_id: event.request_id.clone(),
            request_href: format!("/monitor/events?{request_query}"),
            run_href: event.run_id.as_deref().map(run_href),
            variant_id: opt(&event.variant_id),
            producer: event.producer.clone(),
            payload,
        }
    }
}

/// A run's page: metadata, variants, timeline.
#[derive(Debug, Clone)]
pub struct RunView {
    pub run: RunRow,
    /// Label and value of each metadata field that is set.
    pub meta: Vec<(&'static str, String)>,
    pub facts_json: String,
    pub pack_json: String,
    pub variants: Vec<VariantRow>,
    pub events: Vec<EventRow>,
    /// Still changing: the page listens for updates.
    pub live: bool,
    /// The events page filtered to the run's request.
    pub events_href: String,
}

impl RunView {
    pub fn new(detail: &RunDetail, image_base_url: Option<&str>) -> Self {
        let r = &detail.run;
        let image = |hash: &Option<String>,
                     w: Option<i64>,
                     h: Option<i64>,
                     f: &Option<String>,
                     b: Option<i64>| {
            hash.as_ref().map(|hash| {
                format!(
                    "{hash} ({}x{} {}, {} bytes)",
                    num(w),
                    num(h),
                    opt(f),
                    num(b)
                )
            })
        };
        let fields: Vec<(&'static str, Option<String>)> = vec![
            ("Run id", Some(r.run_id.clone())),
            ("Request id", Some(r.request_id.clone())),
            ("Shop", Some(r.shop_id.clone())),
            ("Status", Some(r.status.clone())),
            ("Started", Some(fmt_time(r.started_at))),
            ("Completed", r.completed_at.map(fmt_time)),
            (
                "Total duration",
                r.total_duration_ms.map(|d| fmt_ms(Some(d))),
            ),
            ("Model", r.model.clone()),
            ("Prompt pack version", r.prompt_pack_version.clone()),
            ("Prompt pack hash", r.prompt_pack_hash.clone()),
            ("Resolved facts hash", r.resolved_facts_hash.clone()),
            ("Product asset", r.product_asset_id.clone()),
            ("Room session", r.room_session_id.clone()),
            (
                "Product image",
                image(
                    &r.product_image_hash,
                    r.product_image_width,
                    r.product_image_height,
                    &r.product_image_format,
                    r.product_image_bytes,
                ),
            ),
            (
                "Room image",
                image(
                    &r.room_image_hash,
                    r.room_image_width,
                    r.room_image_height,
                    &r.room_image_format,
                    r.room_image_bytes,
                ),
            ),
            ("Variants planned", r.variant_count.map(|n| n.to_string())),
        ];
        let origin = detail.events.first().map(|e| e.occurred_at);
        let live = r.status == "running" || detail.variants.iter().any(|v| v.status == "running");
        Self {
            run: RunRow::from(r),
            meta: fields
                .into_iter()
                .filter_map(|(label, value)| value.map(|v| (label, v)))
                .collect(),
            facts_json: pretty_json(&r.resolved_facts_json),
            pack_json: pretty_json(&r.prompt_pack_json),
            variants: detail
                .variants
                .iter()
                .map(|v| VariantRow::new(v, image_base_url))
                .collect(),
            events: detail
                .events
                .iter()
                .map(|e| EventRow::new(e, origin, true))
                .collect(),
            live,
            events_href: format!(
                "/monitor/events?{}",
                form_urlencoded::Serializer::new(String::new())
                    .append_pair("request_id", &r.request_id)
                    .finish()
            ),
        }
    }
}

/// Escapes text for XML/HTML (the SVG charts are built as strings).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_escapes_read_well() {
        assert_eq!(fmt_time(1_700_000_000_123), "2023-11-14 22:13:20.123");
        assert_eq!(fmt_time(1_709_164_800_000), "2024-02-29 00:00:00.000");
        assert_eq!(fmt_ms(Some(850)), "850 ms");
        assert_eq!(fmt_ms(Some(12_345)), "12.3 s");
        assert_eq!(escape("<'\"&>"), "&lt;&#39;&quot;&amp;&gt;");
    }
}
