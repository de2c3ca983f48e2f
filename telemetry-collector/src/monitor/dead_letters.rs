//! Dead letters: what the parse edge refused (`/monitor/dead-letters`,
//! `/api/v1/dead-letters`), newest first, each with a safe preview of its bytes (the
//! bytes themselves are never sent). Both renderings read one [`Listed`] page.
//! Requeueing and settling them is the `dead-letters` command's
//! ([`crate::dead_letters`]).

use askama::Template;
use axum::extract::State;
use axum::response::Response;
use axum::Json;
use serde::{Deserialize, Serialize};

use crate::http::{AppError, AppState};
use crate::store::DeadLetterRecord;

use super::params::{self, bad, encode, present, Listed, Params};
use super::views::{render, When};
use service_kit::now_ms;

/// Bytes of a dead letter shown in its preview.
pub const PREVIEW_BYTES: usize = 64;

/// Query string of the dead letters list: a page size and an id cursor.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct DeadLettersParams {
    pub limit: Option<String>,
    /// `next_cursor` of the previous page (an id).
    pub cursor: Option<String>,
}

impl DeadLettersParams {
    /// The id cursor and the limit.
    pub fn page(&self) -> Result<(Option<i64>, i64), AppError> {
        let before = match present(&self.cursor) {
            None => None,
            Some(c) => Some(
                c.parse()
                    .map_err(|_| bad("cursor must be the next_cursor of a previous page"))?,
            ),
        };
        Ok((before, params::limit(&self.limit)?))
    }
}

/// The page of dead letters `query` asks for.
async fn list(
    state: &AppState,
    query: &DeadLettersParams,
) -> Result<Listed<DeadLetterRecord>, AppError> {
    let (before, limit) = query.page()?;
    let rows = state.store.monitor_dead_letters(before, limit).await?;
    Ok(Listed::new(rows, limit, before.is_none(), |d| {
        d.id.to_string()
    }))
}

/// The first [`PREVIEW_BYTES`] as hex, and as text with anything but printable ASCII
/// shown as `.`.
pub fn preview(raw: &[u8]) -> (String, String) {
    let head = &raw[..raw.len().min(PREVIEW_BYTES)];
    let more = if raw.len() > PREVIEW_BYTES { "…" } else { "" };
    let hex: Vec<String> = head.iter().map(|b| format!("{b:02x}")).collect();
    let text: String = head
        .iter()
        .map(|&b| {
            if (0x20..0x7f).contains(&b) {
                b as char
            } else {
                '.'
            }
        })
        .collect();
    (hex.join(" ") + more, text + more)
}

/// A dead letter with a safe preview of its bytes.
#[derive(Debug, Clone)]
pub struct DeadLetterRow {
    pub id: i64,
    /// When it was received.
    pub received: When,
    pub stream: String,
    pub stream_seq: i64,
    pub subject: String,
    pub reason: String,
    pub size: usize,
    pub hex: String,
    pub text: String,
}

impl DeadLetterRow {
    /// The row of `dead`, its time relative to `now`.
    pub fn new(dead: &DeadLetterRecord, now: i64) -> Self {
        let (hex, text) = preview(&dead.raw);
        Self {
            id: dead.id,
            received: When::new(dead.received_at, now),
            stream: dead.stream.clone(),
            stream_seq: dead.stream_seq,
            subject: dead.subject.clone(),
            reason: dead.reason.clone(),
            size: dead.raw.len(),
            hex,
            text,
        }
    }
}

#[derive(Template)]
#[template(path = "dead_letters.html")]
pub struct DeadLettersPage {
    pub nav: &'static str,
    pub auth: bool,
    pub rows: Vec<DeadLetterRow>,
    pub next_href: Option<String>,
}

/// `/monitor/dead-letters`.
pub async fn page(
    State(state): State<AppState>,
    Params(query): Params<DeadLettersParams>,
) -> Result<Response, AppError> {
    let listed = list(&state, &query).await?;
    let filters = encode(&[("limit", &query.limit)]);
    Ok(render(&DeadLettersPage {
        nav: "dead",
        auth: state.monitor.auth_required(),
        rows: {
            let now = now_ms();
            listed
                .rows
                .iter()
                .map(|d| DeadLetterRow::new(d, now))
                .collect()
        },
        next_href: listed.next_href("/monitor/dead-letters", &filters),
    }))
}

/// A dead letter as `/api/v1` shows it: a preview of its bytes, not the bytes.
#[derive(Debug, Serialize)]
pub struct DeadLetterJson {
    pub id: i64,
    pub stream: String,
    pub stream_seq: i64,
    pub subject: String,
    pub reason: String,
    pub received_at: i64,
    pub size: usize,
    pub preview_hex: String,
    pub preview_text: String,
}

impl From<DeadLetterRecord> for DeadLetterJson {
    fn from(dead: DeadLetterRecord) -> Self {
        let (preview_hex, preview_text) = preview(&dead.raw);
        Self {
            id: dead.id,
            stream: dead.stream,
            stream_seq: dead.stream_seq,
            subject: dead.subject,
            reason: dead.reason,
            received_at: dead.received_at,
            size: dead.raw.len(),
            preview_hex,
            preview_text,
        }
    }
}

/// A page of dead letters: `{ dead_letters, next_cursor }`.
#[derive(Debug, Serialize)]
pub struct DeadLettersJson {
    pub dead_letters: Vec<DeadLetterJson>,
    /// `null` on the last page.
    pub next_cursor: Option<String>,
}

/// `/api/v1/dead-letters`.
pub async fn api(
    State(state): State<AppState>,
    Params(query): Params<DeadLettersParams>,
) -> Result<Json<DeadLettersJson>, AppError> {
    let listed = list(&state, &query).await?;
    Ok(Json(DeadLettersJson {
        dead_letters: listed.rows.into_iter().map(DeadLetterJson::from).collect(),
        next_cursor: listed.next_cursor,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previews_show_bytes_as_hex_and_printable_text() {
        let (hex, text) = preview(b"<a\x00\xff");
        assert_eq!(hex, "3c 61 00 ff");
        assert_eq!(text, "<a..");
        let (hex, text) = preview(&[b'x'; PREVIEW_BYTES + 1]);
        assert!(hex.ends_with('…') && text.ends_with('…'));
    }
}
