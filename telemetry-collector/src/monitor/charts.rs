//! The monitor's charts, drawn on the server as SVG (no chart library, no script):
//! one horizontal bar per group, split into success / failed / timeout / stale / other;
//! p50 / p95 / p99 latency bars per group on a shared scale (the overview); a sparkline
//! of counts over a window (an error group); and over time (the overview's time
//! series, [`stacked_over_time`] and [`lines_over_time`]), one column or one point per
//! step, each with its figures as a tooltip. Labels are escaped.

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

/// Size of a chart over time: its plot area starts after the y-axis labels.
const TIME_WIDTH: f64 = 640.0;
const TIME_HEIGHT: f64 = 160.0;
const TIME_LEFT: f64 = 56.0;
const TIME_BOTTOM: f64 = 18.0;
/// Most series a line chart draws (models beyond are in the tables).
pub const MAX_LINES: usize = 6;

/// The x of step `i` of `n` (its left edge) and a step's width.
fn time_x(i: usize, n: usize) -> (f64, f64) {
    let width = (TIME_WIDTH - TIME_LEFT - 4.0) / n.max(1) as f64;
    (TIME_LEFT + i as f64 * width, width)
}

fn time_open(out: &mut String, title: &str) {
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" class="chart chart-time" viewBox="0 0 {TIME_WIDTH} {}" role="img" aria-label="{}">"#,
        TIME_HEIGHT + TIME_BOTTOM,
        escape(title)
    );
}

/// The axes' labels: the top value, and the first, middle and last step's time.
fn time_close(out: &mut String, top: &str, times: &[String]) {
    let plot = TIME_HEIGHT - 4.0;
    let _ = write!(
        out,
        r#"<line x1="{TIME_LEFT}" y1="{plot}" x2="{}" y2="{plot}" class="axis-line"/><text x="{}" y="10" class="axis" text-anchor="end">{}</text><text x="{}" y="{plot}" class="axis" text-anchor="end">0</text>"#,
        TIME_WIDTH - 4.0,
        TIME_LEFT - 4.0,
        escape(top),
        TIME_LEFT - 4.0,
    );
    let n = times.len();
    if n > 0 {
        let y = TIME_HEIGHT + TIME_BOTTOM - 4.0;
        for (i, anchor) in [(0, "start"), (n / 2, "middle"), (n - 1, "end")] {
            let (x, w) = time_x(i, n);
            let x = match anchor {
                "start" => x,
                "middle" => x + w / 2.0,
                _ => x + w,
            };
            let _ = write!(
                out,
                r#"<text x="{x:.1}" y="{y}" class="axis" text-anchor="{anchor}">{}</text>"#,
                escape(&times[i])
            );
        }
    }
    out.push_str("</svg>");
}

/// One column per step, its counts stacked (`(count, name, class)`, bottom first) on
/// one scale (the largest column).
pub fn stacked_over_time(
    steps: &[Vec<(i64, &str, &str)>],
    times: &[String],
    title: &str,
) -> String {
    let mut out = String::new();
    time_open(&mut out, title);
    let max = steps
        .iter()
        .map(|parts| parts.iter().map(|(n, _, _)| *n).sum::<i64>())
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let plot = TIME_HEIGHT - 4.0;
    for (i, parts) in steps.iter().enumerate() {
        let (x, w) = time_x(i, steps.len());
        let mut y = plot;
        let tip: Vec<String> = parts
            .iter()
            .filter(|(n, _, _)| *n > 0)
            .map(|(n, name, _)| format!("{name} {n}"))
            .collect();
        for (count, _, class) in parts.iter().filter(|(n, _, _)| *n > 0) {
            let h = (plot - 8.0) * *count as f64 / max;
            y -= h;
            let _ = write!(
                out,
                r#"<rect x="{:.1}" y="{y:.1}" width="{:.1}" height="{h:.1}" class="bar-{class}"><title>{}: {}</title></rect>"#,
                x + 0.5,
                (w - 1.0).max(0.5),
                escape(&times[i]),
                escape(&tip.join(", "))
            );
        }
    }
    time_close(&mut out, &(max as i64).to_string(), times);
    out
}

/// One line per series (`(name, values per step)`; a step without a value breaks
/// the line), on one scale from 0 to the largest value, each point with its value as
/// a tooltip. `dashed` series are drawn dashed (p95 beside p50); series `k` and its
/// dashed twin share colour `line-{k / 2}` when `paired`.
pub fn lines_over_time(
    series: &[(String, Vec<Option<f64>>, bool)],
    times: &[String],
    title: &str,
    fmt: fn(f64) -> String,
    paired: bool,
) -> String {
    let mut out = String::new();
    time_open(&mut out, title);
    let max = series
        .iter()
        .flat_map(|(_, values, _)| values.iter().flatten())
        .fold(0.0_f64, |a, b| a.max(*b))
        .max(f64::MIN_POSITIVE);
    let plot = TIME_HEIGHT - 4.0;
    for (k, (name, values, dashed)) in series.iter().enumerate() {
        let colour = if paired { k / 2 } else { k };
        let point = |i: usize, v: f64| {
            let (x, w) = time_x(i, values.len());
            (x + w / 2.0, plot - (plot - 8.0) * v / max)
        };
        let mut path = String::new();
        let mut pen_down = false;
        for (i, value) in values.iter().enumerate() {
            match value {
                Some(v) => {
                    let (x, y) = point(i, *v);
                    let _ = write!(path, "{}{x:.1},{y:.1} ", if pen_down { "L" } else { "M" });
                    pen_down = true;
                }
                None => pen_down = false,
            }
        }
        let dash = if *dashed {
            r#" stroke-dasharray="4 3""#
        } else {
            ""
        };
        let _ = write!(
            out,
            r#"<path d="{}" class="line line-{colour}"{dash}><title>{}</title></path>"#,
            path.trim_end(),
            escape(name)
        );
        for (i, value) in values.iter().enumerate() {
            if let Some(v) = value {
                let (x, y) = point(i, *v);
                let _ = write!(
                    out,
                    r#"<circle cx="{x:.1}" cy="{y:.1}" r="2" class="dot line-{colour}"><title>{}: {} {}</title></circle>"#,
                    escape(&times[i]),
                    escape(name),
                    escape(&fmt(*v))
                );
            }
        }
    }
    time_close(&mut out, &fmt(max), times);
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

    #[test]
    fn charts_over_time_have_a_column_or_point_per_step_and_escape_names() {
        let times: Vec<String> = ["10:00", "10:05", "10:10"].map(String::from).to_vec();
        let steps = vec![
            vec![(3, "success", "ok"), (1, "failed", "failed")],
            vec![],
            vec![(4, "success", "ok")],
        ];
        let svg = stacked_over_time(&steps, &times, "Variants");
        assert_eq!(svg.matches("<rect").count(), 3);
        assert!(
            svg.contains("<title>10:00: success 3, failed 1</title>"),
            "{svg}"
        );
        assert!(svg.contains(r#">4</text>"#), "the scale's top: {svg}");
        let series = vec![
            (
                "<m> p50".to_owned(),
                vec![Some(100.0), None, Some(300.0)],
                false,
            ),
            (
                "<m> p95".to_owned(),
                vec![Some(200.0), None, Some(400.0)],
                true,
            ),
        ];
        let svg = lines_over_time(&series, &times, "Latency", |v| format!("{v} ms"), true);
        // A missing step breaks the line: two moves, no line-to across the gap.
        assert_eq!(svg.matches(r#"d="M"#).count(), 2);
        assert!(!svg.contains(" L"), "{svg}");
        assert_eq!(svg.matches("<circle").count(), 4);
        assert!(svg.contains("&lt;m&gt; p95") && !svg.contains("<m>"));
        assert_eq!(
            svg.matches("line-0").count(),
            6,
            "p50 and p95 share a colour"
        );
        assert!(svg.contains(r#"stroke-dasharray="4 3""#));
    }
}
