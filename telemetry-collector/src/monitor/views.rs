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

/// `2026-11-29 13:45:07.123` (UTC). Producers' clocks are not trusted, so a time
/// outside the years -9999 to 9999 (the database holds any `i64`) shows as unix ms.
pub fn fmt_time(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|at| at.format(SHOWN).ok())
        .unwrap_or_else(|| ms.to_string())
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
    }
}
