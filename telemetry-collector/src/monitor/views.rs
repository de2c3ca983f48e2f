//! How every page shows values (each resource's rows are in its own module): times in
//! UTC, durations, status classes from a fixed list, links built from fixed prefixes
//! and percent-encoded values, JSON pretty-printed; and rendering a template.
//! Everything here is plain text; the templates escape it.

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::OffsetDateTime;

use super::params::path_segment;

/// How [`fmt_time`] shows a time: `2026-11-29 13:45:07.123`.
const SHOWN: &[BorrowedFormatItem<'_>] =
    format_description!("[year]-[month]-[day] [hour]:[minute]:[second].[subsecond digits:3]");

/// How [`fmt_short_time`] shows a time: `11-29 13:45`.
const SHORT: &[BorrowedFormatItem<'_>] = format_description!("[month]-[day] [hour]:[minute]");

/// RFC 3339 in UTC with milliseconds, for `<time datetime>` and the date-time picker.
const ISO: &[BorrowedFormatItem<'_>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");

/// `2026-11-29 13:45:07.123` (UTC). Producers' clocks are not trusted, so a time
/// outside the years -9999 to 9999 (the database holds any `i64`) shows as unix ms.
pub fn fmt_time(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|at| at.format(SHOWN).ok())
        .unwrap_or_else(|| ms.to_string())
}

/// `11-29 13:45` (UTC), for the axes and tooltips of charts over time.
pub fn fmt_short_time(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|at| at.format(SHORT).ok())
        .unwrap_or_else(|| ms.to_string())
}

/// `2026-11-29T13:45:07.123Z`; empty outside the years -9999 to 9999.
pub fn iso_time(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|at| at.format(ISO).ok())
        .unwrap_or_default()
}

/// A time filter as `<input type=datetime-local>` takes it: UTC, no offset, the
/// milliseconds only when there are some (`2026-11-29T13:45:07`); empty for none.
/// `monitor.js` shows it in the browser's time zone unless the reader chose UTC.
pub fn picker_value(ms: Option<i64>) -> String {
    ms.map(iso_time)
        .map(|iso| {
            iso.trim_end_matches('Z')
                .trim_end_matches(".000")
                .to_owned()
        })
        .unwrap_or_default()
}

/// How long before `now` a time was, in words: `just now`, `42 s ago`, `3 min ago`,
/// `5 h ago`, `12 d ago`; `in 3 min` for a time ahead of our clock (a producer's).
pub fn fmt_ago(at: i64, now: i64) -> String {
    let ahead = at > now;
    let secs = now.abs_diff(at) / 1000;
    let span = match secs {
        0..=4 => return "just now".to_owned(),
        s if s < 60 => format!("{s} s"),
        s if s < 3600 => format!("{} min", s / 60),
        s if s < 86_400 => format!("{} h", s / 3600),
        s => format!("{} d", s / 86_400),
    };
    if ahead {
        format!("in {span}")
    } else {
        format!("{span} ago")
    }
}

/// A time as the lists show it: absolute (UTC) and relative to the page's read.
#[derive(Debug, Clone, Default)]
pub struct When {
    /// `2026-11-29 13:45:07.123`.
    pub text: String,
    /// `2026-11-29T13:45:07.123Z` (the `<time datetime>`).
    pub iso: String,
    /// Unix ms (`monitor.js` keeps [`When::ago`] current from it).
    pub ms: i64,
    /// `3 min ago`.
    pub ago: String,
}

impl When {
    pub fn new(ms: i64, now: i64) -> Self {
        Self {
            text: fmt_time(ms),
            iso: iso_time(ms),
            ms,
            ago: fmt_ago(ms, now),
        }
    }
}

/// The runs list filtered to one value of one filter (`shop`, `model`,
/// `prompt_pack_version`, `error_code`, ...).
pub fn runs_href(name: &str, value: &str) -> String {
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair(name, value)
        .finish();
    format!("/monitor?{query}")
}

/// Renders a template, or an opaque 500 (the cause logged).
pub fn render<T: Template>(template: &T) -> Response {
    match template.render() {
        Ok(html) => Html(html).into_response(),
        Err(err) => {
            tracing::error!(error = %err, "template failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

/// A filter's value as the form shows it again: trimmed, empty when not set.
pub fn field(value: &Option<String>) -> String {
    super::params::present(value).unwrap_or_default()
}

/// `850 ms`, `12.3 s`, or empty.
pub fn fmt_ms(ms: Option<i64>) -> String {
    match ms {
        None => String::new(),
        Some(ms) if ms < 1000 => format!("{ms} ms"),
        Some(ms) => format!("{:.1} s", ms as f64 / 1000.0),
    }
}

/// How long ago, coarsely: `45s`, `5m`, `3h 20m`, `2d 4h` (negative ages, from a
/// clock ahead of ours, show as `0s`).
pub fn fmt_age(ms: i64) -> String {
    let secs = ms.max(0) / 1000;
    let (d, h, m) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60);
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{m}m"),
        s if s < 86_400 => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
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
        // A run its producer stopped before it finished: terminal, and not a success.
        "failed" | "interrupted" => "st-failed",
        "timeout" => "st-timeout",
        "running" => "st-running",
        "stale" => "st-stale",
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
        assert_eq!(iso_time(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(picker_value(Some(1_700_000_000_000)), "2023-11-14T22:13:20");
        assert_eq!(
            picker_value(Some(1_700_000_000_120)),
            "2023-11-14T22:13:20.120"
        );
        assert_eq!(picker_value(None), "");
        let now = 1_700_000_000_000;
        assert_eq!(fmt_ago(now - 2_000, now), "just now");
        assert_eq!(fmt_ago(now - 42_000, now), "42 s ago");
        assert_eq!(fmt_ago(now - 200_000, now), "3 min ago");
        assert_eq!(fmt_ago(now - 5 * 3_600_000 - 1, now), "5 h ago");
        assert_eq!(fmt_ago(now - 12 * 86_400_000, now), "12 d ago");
        assert_eq!(fmt_ago(now + 180_000, now), "in 3 min");
        assert_eq!(
            runs_href("shop", "Casa Verde&x"),
            "/monitor?shop=Casa+Verde%26x"
        );
    }
}
