//! Events: the list (`/monitor/events`, `/api/v1/events`, live rows) filtered by type,
//! source, shop, request and time, newest first. Both renderings read one
//! [`Listed`] page; an event row is also a line of a run's timeline
//! ([`super::runs::detail`]).

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::http::{AppError, AppState};
use crate::store::{EventCursor, EventFilter, EventRecord};

use super::json_blob::JsonBlob;
use super::live::{self, Fragment};
use super::params::{self, encode, parse_time, present, Listed, Params, QuickRange};
use super::runs::Linked;
use super::views::{field, fmt_ms, fmt_time, opt, picker_value, render, run_href, When};
use service_kit::now_ms;

/// Characters of an event payload shown in a list (the run page shows it whole).
pub const PAYLOAD_PREVIEW_CHARS: usize = 160;

/// Query string of the events list (page, API and live stream); any other name is a
/// 400 ([`Params`]).
#[derive(Debug, Default, Clone, Deserialize)]
pub struct EventsParams {
    #[serde(rename = "type")]
    pub event_type: Option<String>,
    pub source: Option<String>,
    pub shop: Option<String>,
    pub request_id: Option<String>,
    /// A quick range: `15m`, `1h`, `6h`, `24h`, `7d`, `30d` before `to` (or now); with
    /// `from` too, both bounds apply.
    pub range: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

impl EventsParams {
    pub fn filter(&self) -> Result<EventFilter, AppError> {
        let (from, to) = params::quick_window(&self.range, &self.from, &self.to, now_ms())?;
        Ok(EventFilter {
            event_type: params::text("type", &self.event_type)?,
            source: params::text("source", &self.source)?,
            shop_id: params::text("shop", &self.shop)?,
            request_id: params::text("request_id", &self.request_id)?,
            from,
            to,
            before: parse_cursor(&self.cursor)?,
            limit: params::limit(&self.limit)?,
        })
    }

    /// The filters (not the cursor) as a query string.
    pub fn query_string(&self) -> String {
        encode(&[
            ("type", &self.event_type),
            ("source", &self.source),
            ("shop", &self.shop),
            ("request_id", &self.request_id),
            ("range", &self.range),
            ("from", &self.from),
            ("to", &self.to),
            ("limit", &self.limit),
        ])
    }

    /// The quick ranges as links keeping the other filters.
    pub fn range_links(&self) -> Vec<QuickRange> {
        let others = encode(&[
            ("type", &self.event_type),
            ("source", &self.source),
            ("shop", &self.shop),
            ("request_id", &self.request_id),
            ("limit", &self.limit),
        ]);
        params::range_links(
            "/monitor/events",
            &others,
            &self.range,
            &self.from,
            &self.to,
        )
    }
}

/// An events page's cursor as text: `{occurred_at}:{producer_seq}:{event_id}:{producer}`
/// (the producer last: it is the one part that may hold a `:`).
fn cursor_text(e: &EventRecord) -> String {
    format!(
        "{}:{}:{}:{}",
        e.occurred_at, e.producer_seq, e.event_id, e.producer
    )
}

/// The `cursor` parameter of an events page ([`cursor_text`]).
fn parse_cursor(cursor: &Option<String>) -> Result<Option<EventCursor>, AppError> {
    let Some(cursor) = params::text("cursor", cursor)? else {
        return Ok(None);
    };
    let mut parts = cursor.splitn(4, ':');
    let mut next = || parts.next().ok_or_else(|| params::bad("bad cursor"));
    let occurred_at = next()?.parse().map_err(|_| params::bad("bad cursor"))?;
    let producer_seq = next()?.parse().map_err(|_| params::bad("bad cursor"))?;
    let event_id = next()?.to_owned();
    let producer = next()?.to_owned();
    Ok(Some(EventCursor {
        occurred_at,
        producer,
        producer_seq,
        event_id,
    }))
}

/// The page of events `query` asks for.
async fn list(state: &AppState, query: &EventsParams) -> Result<Listed<EventRecord>, AppError> {
    let filter = query.filter()?;
    let events = state.store.monitor_events(&filter).await?;
    Ok(Listed::new(
        events,
        filter.limit,
        filter.before.is_none(),
        cursor_text,
    ))
}

/// An event in a list or on a run's timeline.
#[derive(Debug, Clone)]
pub struct EventRow {
    pub event_id: String,
    pub time: String,
    /// The time, absolute and relative (the events list shows both).
    pub when: When,
    /// Since the first event of the timeline (`+120 ms`).
    pub offset: String,
    pub kind: String,
    pub event_type: String,
    pub source: String,
    /// The shop, linking to its runs.
    pub shop: Linked,
    pub request_id: String,
    pub request_href: String,
    pub run_href: Option<String>,
    pub variant_id: String,
    pub producer: String,
    pub payload: String,
}

impl EventRow {
    /// The row of `event`; its offset from `origin` (a timeline's first event), its
    /// relative time from `now`.
    pub fn new(event: &EventRecord, origin: Option<i64>, full_payload: bool, now: i64) -> Self {
        let mut payload = event.payload.clone().unwrap_or_default();
        if !full_payload && payload.chars().count() > PAYLOAD_PREVIEW_CHARS {
            payload = payload
                .chars()
                .take(PAYLOAD_PREVIEW_CHARS)
                .collect::<String>()
                + "…";
        }
        Self {
            event_id: event.event_id.clone(),
            time: fmt_time(event.occurred_at),
            when: When::new(event.occurred_at, now),
            offset: origin
                .map(|o| format!("+{}", fmt_ms(Some(event.occurred_at - o))))
                .unwrap_or_default(),
            kind: event.kind.clone(),
            event_type: event.event_type.clone(),
            source: opt(&event.source),
            shop: Linked::runs("shop", &event.shop_id),
            request_id: event.request_id.clone(),
            request_href: request_href(&event.request_id),
            run_href: event.run_id.as_deref().map(run_href),
            variant_id: opt(&event.variant_id),
            producer: event.producer.clone(),
            payload,
        }
    }
}

/// The events list filtered to one request.
pub fn request_href(request_id: &str) -> String {
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("request_id", request_id)
        .finish();
    format!("/monitor/events?{query}")
}

/// The events table's rows (also what the live stream sends).
#[derive(Template)]
#[template(path = "events_rows.html")]
pub struct EventsRows {
    pub rows: Vec<EventRow>,
}

impl EventsRows {
    /// The rows of a page of events, as the events list shows them.
    pub fn new(events: &[EventRecord]) -> Self {
        let now = now_ms();
        Self {
            rows: events
                .iter()
                .map(|e| EventRow::new(e, None, false, now))
                .collect(),
        }
    }
}

#[derive(Template)]
#[template(path = "events.html")]
pub struct EventsPage {
    pub nav: &'static str,
    pub auth: bool,
    pub event_type: String,
    pub source: String,
    pub shop: String,
    pub request_id: String,
    pub from: String,
    pub to: String,
    /// The quick range shown (`1h`), empty when none.
    pub range: String,
    pub ranges: Vec<QuickRange>,
    pub rows: Vec<EventRow>,
    pub next_href: Option<String>,
    /// The first page follows new events (none on older pages).
    pub live_url: Option<String>,
}

/// `/monitor/events`.
pub async fn page(
    State(state): State<AppState>,
    Params(query): Params<EventsParams>,
) -> Result<Response, AppError> {
    let listed = list(&state, &query).await?;
    let filters = query.query_string();
    let filter = query.filter()?;
    Ok(render(&EventsPage {
        nav: "events",
        auth: state.monitor.auth_required(),
        event_type: field(&query.event_type),
        source: field(&query.source),
        shop: field(&query.shop),
        request_id: field(&query.request_id),
        // A quick range's start moves with the clock: the picker shows only a chosen one.
        from: picker_value(parse_time("from", &query.from)?),
        to: picker_value(filter.to),
        range: present(&query.range)
            .map(|r| r.to_ascii_lowercase())
            .unwrap_or_default(),
        ranges: query.range_links(),
        rows: EventsRows::new(&listed.rows).rows,
        next_href: listed.next_href("/monitor/events", &filters),
        live_url: listed.live_url("/monitor/live/events", &filters),
    }))
}

/// An event as `/api/v1` shows it (the same keys in a list and in a run).
#[derive(Debug, Serialize)]
pub struct EventJson {
    pub event_id: String,
    pub kind: String,
    pub event_type: String,
    pub source: Option<String>,
    pub shop_id: String,
    pub request_id: String,
    pub run_id: Option<String>,
    pub variant_id: Option<String>,
    pub producer: String,
    pub producer_seq: i64,
    pub occurred_at: i64,
    pub received_at: i64,
    pub stream_seq: i64,
    pub subject: String,
    /// The event's JSON payload (an app event's own, or the collector's summary of
    /// the other bodies), as a JSON value.
    pub payload: Option<JsonBlob>,
}

impl From<EventRecord> for EventJson {
    fn from(event: EventRecord) -> Self {
        Self {
            event_id: event.event_id,
            kind: event.kind,
            event_type: event.event_type,
            source: event.source,
            shop_id: event.shop_id,
            request_id: event.request_id,
            run_id: event.run_id,
            variant_id: event.variant_id,
            producer: event.producer,
            producer_seq: event.producer_seq,
            occurred_at: event.occurred_at,
            received_at: event.received_at,
            stream_seq: event.stream_seq,
            subject: event.subject,
            payload: JsonBlob::from_stored(event.payload),
        }
    }
}

/// A page of events: `{ events, next_cursor }`.
#[derive(Debug, Serialize)]
pub struct EventsJson {
    pub events: Vec<EventJson>,
    /// `null` on the last page.
    pub next_cursor: Option<String>,
}

/// `/api/v1/events`.
pub async fn api(
    State(state): State<AppState>,
    Params(query): Params<EventsParams>,
) -> Result<Json<EventsJson>, AppError> {
    let listed = list(&state, &query).await?;
    Ok(Json(EventsJson {
        events: listed.rows.into_iter().map(EventJson::from).collect(),
        next_cursor: listed.next_cursor,
    }))
}

/// The first page of events under a filter, as table rows.
struct LiveEvents(EventFilter);

impl Fragment for LiveEvents {
    async fn render(&self, state: &AppState) -> Result<Option<(String, bool)>, AppError> {
        let events = state.store.monitor_events(&self.0).await?;
        Ok(EventsRows::new(&events)
            .render()
            .ok()
            .map(|html| (html, true)))
    }
}

/// `/monitor/live/events?<filters>`: the first page of events as table rows.
pub async fn live(
    State(state): State<AppState>,
    Params(query): Params<EventsParams>,
) -> Result<Response, AppError> {
    let mut filter = query.filter()?;
    filter.before = None;
    Ok(live::open(state, LiveEvents(filter)))
}
