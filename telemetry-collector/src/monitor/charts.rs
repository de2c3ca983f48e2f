//! The monitor's charts, drawn on the server as SVG (no chart library, no script):
//! one horizontal bar per group, split into success / failed / timeout / stale / other;
//! p50 / p95 / p99 latency bars per group on a shared scale (the overview); and a
//! sparkline of counts over a window (an error group). Labels are escaped.

use std::fmt::Write as _;

use crate::store::GroupStats;

use super::views::{escape, fmt_ms};

const WIDTH: f64 = 640.0;
const LABEL: f64 = 180.0;
const ROW: f64 = 26.0;
/// Longest label drawn (the table beside the chart has the full text).
const MAX_LABEL_CHARS: usize = 28;

fn label(key: &str) -> String {
    let short: String = key.chars().take(MAX_LABEL_CHARS).collect();
    escape(&short)
}

fn open(out: &mut String, rows: usize, title: &str) {
    let height = ROW * rows.max(1) as f64 + 24.0;
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {WIDTH} {height}" role="img" aria-label="{}">"#,
        escape(title)
    );
}

/// Stacked outcome shares per group.
pub fn rates(groups: &[GroupStats], title: &str) -> String {
    let mut out = String::new();
    open(&mut out, groups.len(), title);
    let span = WIDTH - LABEL - 10.0;
    for (i, g) in groups.iter().enumerate() {
        let y = i as f64 * ROW;
        let _ = write!(
            out,
            r#"<text x="0" y="{}" class="label">{}</text>"#,
            y + 17.0,
            label(&g.key)
        );
        let mut x = LABEL;
        for (count, class) in [
            (g.success, "ok"),
            (g.failed, "failed"),
            (g.timeout, "timeout"),
            (g.stale, "stale"),
            (g.other, "other"),
        ] {
            let w = if g.total == 0 {
                0.0
            } else {
                span * count as f64 / g.total as f64
            };
            if w > 0.0 {
                let _ = write!(
                    out,
                    r#"<rect x="{x:.1}" y="{}" width="{w:.1}" height="18" class="bar-{class}"><title>{class}: {count} ({:.1}%)</title></rect>"#,
                    y + 4.0,
                    g.rate(count)
                );
            }
            x += w;
        }
    }
    let _ = write!(
        out,
        r#"<text x="{LABEL}" y="{}" class="axis">0%</text><text x="{}" y="{}" class="axis" text-anchor="end">100%</text></svg>"#,
        ROW * groups.len().max(1) as f64 + 18.0,
        WIDTH - 10.0,
        ROW * groups.len().max(1) as f64 + 18.0
    );
    out
}

/// p50 / p95 / p99 per group, on one scale (the largest p99).
pub fn latency(groups: &[GroupStats], title: &str) -> String {
    let mut out = String::new();
    open(&mut out, groups.len(), title);
    let max = groups
        .iter()
        .filter_map(|g| g.p99_ms.or(g.p95_ms).or(g.p50_ms))
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let span = WIDTH - LABEL - 10.0;
    for (i, g) in groups.iter().enumerate() {
        let y = i as f64 * ROW;
        let _ = write!(
            out,
            r#"<text x="0" y="{}" class="label">{}</text>"#,
            y + 17.0,
            label(&g.key)
        );
        for (j, (value, class)) in [(g.p50_ms, "p50"), (g.p95_ms, "p95"), (g.p99_ms, "p99")]
            .into_iter()
            .enumerate()
        {
            if let Some(value) = value {
                let _ = write!(
                    out,
                    r#"<rect x="{LABEL}" y="{}" width="{:.1}" height="5" class="bar-{class}"><title>{class}: {}</title></rect>"#,
                    y + 4.0 + j as f64 * 6.0,
                    span * value as f64 / max,
                    fmt_ms(Some(value))
                );
            }
        }
    }
    let bottom = ROW * groups.len().max(1) as f64 + 18.0;
    let _ = write!(
        out,
        r#"<text x="{LABEL}" y="{bottom}" class="axis">0</text><text x="{}" y="{bottom}" class="axis" text-anchor="end">{}</text></svg>"#,
        WIDTH - 10.0,
        fmt_ms(Some(max as i64))
    );
    out
}

/// Width and height of a [`sparkline`].
const SPARK_WIDTH: f64 = 96.0;
const SPARK_HEIGHT: f64 = 20.0;

/// Counts over consecutive slices of a window (oldest first) as small bars on one
/// scale (the largest count), each with its count as a tooltip; `what` says what a
/// slice is (`per hour`) for the accessible name.
pub fn sparkline(counts: &[i64], what: &str) -> String {
    let max = counts.iter().copied().max().unwrap_or(0).max(1) as f64;
    let total: i64 = counts.iter().sum();
    let step = SPARK_WIDTH / counts.len().max(1) as f64;
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="spark" viewBox="0 0 {SPARK_WIDTH} {SPARK_HEIGHT}" width="{SPARK_WIDTH}" height="{SPARK_HEIGHT}" role="img" aria-label="{}">"#,
        escape(&format!(
            "{total} in the window, at most {} {what}",
            max as i64 * i64::from(total > 0)
        ))
    );
    for (i, count) in counts.iter().enumerate() {
        // Every non-zero slice shows at least a sliver.
        let h = if *count > 0 {
            (SPARK_HEIGHT * *count as f64 / max).max(1.5)
        } else {
            0.0
        };
        let _ = write!(
            out,
            r#"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{h:.1}" class="bar-failed"><title>{count}</title></rect>"#,
            i as f64 * step,
            SPARK_HEIGHT - h,
            (step - 1.0).max(0.5),
        );
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sparkline_has_one_bar_per_slice_on_one_scale() {
        let svg = sparkline(&[0, 2, 4, 1], "per hour");
        assert_eq!(svg.matches("<rect").count(), 4);
        assert!(
            svg.contains(r#"aria-label="7 in the window, at most 4 per hour""#),
            "{svg}"
        );
        // The largest count fills the height; an empty slice has no height.
        assert!(
            svg.contains(r#"y="0.0" width="23.0" height="20.0""#),
            "{svg}"
        );
        assert!(
            svg.contains(r#"height="0.0" class="bar-failed"><title>0</title>"#),
            "{svg}"
        );
        assert!(sparkline(&[], "<x>").contains("at most 0 &lt;x&gt;"));
    }
}
