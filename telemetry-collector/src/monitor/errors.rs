//! Error groups (`/monitor/errors`, `/api/v1/error-groups`): the failed and timed-out
//! variants of the runs started in a window, of one model when asked, grouped by model,
//! error code and message with ids and numbers normalised away
//! ([`crate::store::normalise`]), most frequent first, each with its count, share of
//! the window's errors, first and last seen and a sparkline of its counts over the
//! window; the page links each group to its runs: the group's latest variants with
//! their runs (`error_code` and `error_group` select one), each linking to its run.
//!
//! The read queues for an overview query slot ([`Monitor::aggregate`]): like the
//! overview, it reads every run of the window.
//!
//! [`Monitor::aggregate`]: super::Monitor::aggregate

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::http::{AppError, AppState};
use crate::store::{ErrorFilter, ErrorGroup, ErrorGroups, ErrorSample, ErrorSampleFilter};
use service_kit::now_ms;

use super::charts;
use super::overview::{runs_href, window, window_choices};
use super::params::{self, Params};
use super::views::{fmt_ms, fmt_time, opt, render, run_href, status_class};

/// Most groups one answer lists (the most frequent); the rest are counted in
/// `left_off`. Normalising keeps one error's occurrences in one group, so this many
/// distinct errors in one window means something is wrong beyond any one of them.
pub const MAX_GROUPS: usize = 200;
/// Variants of one group the page lists.
pub const SAMPLE_LIMIT: i64 = 50;

/// Query string of `/api/v1/error-groups`: a named window or `from` / `to` (as the
/// overview's), and a model.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct ErrorGroupsParams {
    pub window: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    /// Only this model's runs (exact).
    pub model: Option<String>,
}

/// Query string of `/monitor/errors`: the API's, and one group to list the variants
/// of (its error code and normalised message, both needed).
#[derive(Debug, Default, Clone, Deserialize)]
pub struct ErrorsPageParams {
    pub window: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub model: Option<String>,
    pub error_code: Option<String>,
    pub error_group: Option<String>,
}

/// The store's filter of a window and model at `now`, and the window's name when named.
fn filter(
    name: &Option<String>,
    from: &Option<String>,
    to: &Option<String>,
    model: &Option<String>,
) -> Result<(ErrorFilter, String), AppError> {
    let (from, to, name) = window(name, from, to, now_ms())?;
    let model = params::text("model", model)?;
    Ok((ErrorFilter { from, to, model }, name))
}

/// What a slice of `slice_ms` is, for the sparkline's accessible name.
fn per(slice_ms: i64) -> String {
    match slice_ms {
        3_600_000 => "per hour".to_owned(),
        ms if ms % 3_600_000 == 0 => format!("per {} hours", ms / 3_600_000),
        ms if ms % 60_000 == 0 => format!("per {} minutes", ms / 60_000),
        ms => format!("per {}", fmt_ms(Some(ms))),
    }
}

/// `/monitor/errors?...` selecting `group` in the same window.
fn group_href(group: &ErrorGroup, from: i64, to: i64) -> Option<String> {
    let (code, message) = (group.error_code.as_ref()?, group.error_group.as_ref()?);
    let query = params::encode(&[
        ("from", &Some(from.to_string())),
        ("to", &Some(to.to_string())),
        ("model", &group.model),
        ("error_code", &Some(code.clone())),
        ("error_group", &Some(message.clone())),
    ]);
    Some(format!("/monitor/errors?{query}"))
}

/// A group on the page.
pub struct GroupLine {
    pub model: String,
    /// The model's runs in the window.
    pub model_href: Option<String>,
    pub code: String,
    pub message: String,
    pub count: i64,
    pub share: String,
    pub first_seen: String,
    pub last_seen: String,
    /// Server-drawn SVG (no stored text in it).
    pub sparkline: String,
    /// This group's variants and their runs.
    pub href: Option<String>,
    pub selected: bool,
}

impl GroupLine {
    fn new(group: &ErrorGroup, all: &ErrorGroups, selected: bool) -> Self {
        let model = group.model.clone().unwrap_or_else(|| "(none)".to_owned());
        Self {
            model_href: group
                .model
                .as_deref()
                .and_then(|m| runs_href(Some(m), None, all.from, all.to)),
            model,
            code: opt(&group.error_code),
            message: group
                .error_group
                .clone()
                .unwrap_or_else(|| "(stored before error groups; filled at the next start)".into()),
            count: group.count,
            share: format!("{:.1}%", group.share(all.total)),
            first_seen: group.first_seen.map(fmt_time).unwrap_or_default(),
            last_seen: group.last_seen.map(fmt_time).unwrap_or_default(),
            sparkline: charts::sparkline(&group.slices, &per(all.slice_ms)),
            href: group_href(group, all.from, all.to),
            selected,
        }
    }
}

/// A variant of the selected group.
pub struct SampleLine {
    pub run_id: String,
    pub run_href: String,
    pub time: String,
    pub shop: String,
    pub run_status: String,
    pub run_status_class: &'static str,
    pub variant_id: String,
    pub status: String,
    pub status_class: &'static str,
    pub latency: String,
    pub finished: String,
    /// As sent.
    pub message: String,
}

#[derive(Template)]
#[template(path = "errors.html")]
pub struct ErrorsPage {
    pub nav: &'static str,
    pub auth: bool,
    pub window: String,
    pub windows: Vec<(&'static str, bool)>,
    pub from: String,
    pub to: String,
    pub model: String,
    /// Failed and timed-out variants in the window.
    pub total: i64,
    pub groups: Vec<GroupLine>,
    pub left_off: usize,
    /// What a sparkline's slice is.
    pub per: String,
    /// The selected group (error code, normalised message), when one is.
    pub selected: Option<(String, String)>,
    pub samples: Vec<SampleLine>,
    /// The runs list for the window (and model).
    pub runs_href: String,
}

/// `/monitor/errors`.
pub async fn page(
    State(state): State<AppState>,
    Params(query): Params<ErrorsPageParams>,
) -> Result<Response, AppError> {
    let (filter, window) = filter(&query.window, &query.from, &query.to, &query.model)?;
    let code = params::text("error_code", &query.error_code)?;
    let message = params::text("error_group", &query.error_group)?;
    let selected = code.zip(message);
    let store = &state.store;
    let sample_filter = selected
        .clone()
        .map(|(error_code, error_group)| ErrorSampleFilter {
            from: filter.from,
            to: filter.to,
            model: filter.model.clone(),
            error_code,
            error_group,
            limit: SAMPLE_LIMIT,
        });
    let (groups, samples) = state
        .monitor
        .aggregate(async {
            let groups = store.monitor_error_groups(&filter).await?;
            let samples = match &sample_filter {
                Some(sample_filter) => store.monitor_error_samples(sample_filter).await?,
                None => Vec::new(),
            };
            Ok((groups, samples))
        })
        .await?;
    let stale = state.monitor.stale_cutoff();
    let is_selected = |g: &ErrorGroup| {
        selected.as_ref().is_some_and(|(code, message)| {
            g.error_code.as_ref() == Some(code)
                && g.error_group.as_ref() == Some(message)
                && (filter.model.is_none() || g.model == filter.model)
        })
    };
    let samples = samples
        .iter()
        .map(|s: &ErrorSample| {
            let run_status = stale.shown(&s.run_status, s.started_at);
            SampleLine {
                run_id: s.run_id.clone(),
                run_href: run_href(&s.run_id),
                time: fmt_time(s.started_at),
                shop: s.shop_id.clone(),
                run_status: run_status.to_owned(),
                run_status_class: status_class(run_status),
                variant_id: s.variant_id.clone(),
                status: s.status.clone(),
                status_class: status_class(&s.status),
                latency: fmt_ms(s.latency_ms),
                finished: s.finished_at.map(fmt_time).unwrap_or_default(),
                message: opt(&s.error_message),
            }
        })
        .collect();
    Ok(render(&ErrorsPage {
        nav: "errors",
        auth: state.monitor.auth_required(),
        windows: window_choices(&window),
        window,
        from: fmt_time(groups.from),
        to: fmt_time(groups.to),
        model: filter.model.clone().unwrap_or_default(),
        total: groups.total,
        left_off: groups.groups.len().saturating_sub(MAX_GROUPS),
        per: per(groups.slice_ms),
        groups: groups
            .groups
            .iter()
            .take(MAX_GROUPS)
            .map(|g| GroupLine::new(g, &groups, is_selected(g)))
            .collect(),
        selected,
        samples,
        runs_href: runs_href(filter.model.as_deref(), None, groups.from, groups.to)
            .unwrap_or_else(|| "/monitor".to_owned()),
    }))
}

/// One group as `/api/v1/error-groups` shows it.
#[derive(Debug, Serialize)]
pub struct ErrorGroupJson {
    /// `null` for runs whose start was never received.
    pub model: Option<String>,
    pub error_code: Option<String>,
    /// The normalised message; `null` for a variant stored before error groups and
    /// not filled yet (the collector fills them when it starts).
    pub error_group: Option<String>,
    pub count: i64,
    /// Percentage of the window's failed and timed-out variants, one decimal.
    pub share: f64,
    /// Earliest and latest result time, unix ms.
    pub first_seen: Option<i64>,
    pub last_seen: Option<i64>,
    /// Variants per slice of the window (`slice_ms` wide), oldest first.
    pub slices: Vec<i64>,
}

/// `{ from, to, model, slice_ms, total, left_off, groups }`.
#[derive(Debug, Serialize)]
pub struct ErrorGroupsJson {
    pub from: i64,
    pub to: i64,
    pub model: Option<String>,
    pub slice_ms: i64,
    /// Failed and timed-out variants in the window.
    pub total: i64,
    /// Groups past [`MAX_GROUPS`], not listed.
    pub left_off: usize,
    pub groups: Vec<ErrorGroupJson>,
}

/// `/api/v1/error-groups`.
pub async fn api(
    State(state): State<AppState>,
    Params(query): Params<ErrorGroupsParams>,
) -> Result<Json<ErrorGroupsJson>, AppError> {
    let (filter, _) = filter(&query.window, &query.from, &query.to, &query.model)?;
    let groups = state
        .monitor
        .aggregate(state.store.monitor_error_groups(&filter))
        .await?;
    let total = groups.total;
    Ok(Json(ErrorGroupsJson {
        from: groups.from,
        to: groups.to,
        model: filter.model,
        slice_ms: groups.slice_ms,
        total,
        left_off: groups.groups.len().saturating_sub(MAX_GROUPS),
        groups: groups
            .groups
            .into_iter()
            .take(MAX_GROUPS)
            .map(|g| ErrorGroupJson {
                share: (g.share(total) * 10.0).round() / 10.0,
                model: g.model,
                error_code: g.error_code,
                error_group: g.error_group,
                count: g.count,
                first_seen: g.first_seen,
                last_seen: g.last_seen,
                slices: g.slices,
            })
            .collect(),
    }))
}
