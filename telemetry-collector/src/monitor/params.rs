//! Query strings of pages and API routes → store filters, and back (next-page and live
//! links). Empty fields (what an HTML form sends) mean "no filter". Times are unix ms
//! or `YYYY-MM-DDTHH:MM[:SS]` in UTC (what `<input type=datetime-local>` sends).
//!
//! Every text a filter (or a run id in a path) passes on to the store is refused with a
//! 400 naming the parameter when it holds a control character (`%00`, CR, LF, DEL,
//! ...): Postgres `text` cannot hold NUL, and no id, name or version holds any of them
//! (the parse edge dead-letters envelopes whose ids do).

use serde::Deserialize;
use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::PrimitiveDateTime;

use crate::http::AppError;
use crate::store::{EventFilter, RunFilter, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};

/// Query string of the runs list (page and API).
#[derive(Debug, Default, Clone, Deserialize)]
pub struct RunsParams {
    pub shop: Option<String>,
    pub status: Option<String>,
    pub model: Option<String>,
    pub prompt_pack_version: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    /// A run id or request id.
    pub q: Option<String>,
    pub limit: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// Query string of the events list (page and API).
#[derive(Debug, Default, Clone, Deserialize)]
pub struct EventsParams {
    #[serde(rename = "type")]
    pub event_type: Option<String>,
    pub source: Option<String>,
    pub shop: Option<String>,
    pub request_id: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

/// Query string of the dead letters list.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct PageParams {
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

/// Query string of the overview: a named window (`1h`, `6h`, `24h`, `7d`, `30d`) or
/// `from`/`to`.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct StatsParams {
    pub window: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
}

/// The named windows the overview offers.
pub const WINDOWS: [(&str, i64); 5] = [
    ("1h", 3_600_000),
    ("6h", 6 * 3_600_000),
    ("24h", 24 * 3_600_000),
    ("7d", 7 * 24 * 3_600_000),
    ("30d", 30 * 24 * 3_600_000),
];

fn bad(reason: impl Into<String>) -> AppError {
    AppError::BadRequest(reason.into())
}

/// `None` for a missing or blank field.
pub fn present(value: &Option<String>) -> Option<String> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

/// `Err` naming `name` when the raw value (before trimming) has a control character.
fn no_control(name: &str, value: Option<&str>) -> Result<(), AppError> {
    if value.is_some_and(|v| v.chars().any(char::is_control)) {
        return Err(bad(format!("{name} must not contain control characters")));
    }
    Ok(())
}

/// A text filter: [`present`], after refusing control characters (400 naming `name`).
pub fn text(name: &str, value: &Option<String>) -> Result<Option<String>, AppError> {
    no_control(name, value.as_deref())?;
    Ok(present(value))
}

/// A run id from a path (`/monitor/runs/{id}`, `/api/v1/runs/{id}`, live): no control
/// characters.
pub fn run_id(id: &str) -> Result<&str, AppError> {
    no_control("run id", Some(id))?;
    Ok(id)
}

fn limit(value: &Option<String>) -> Result<i64, AppError> {
    match present(value) {
        None => Ok(DEFAULT_PAGE_SIZE),
        Some(text) => match text.parse::<i64>() {
            Ok(n) if (1..=MAX_PAGE_SIZE).contains(&n) => Ok(n),
            _ => Err(bad(format!("limit must be between 1 and {MAX_PAGE_SIZE}"))),
        },
    }
}

/// Unix ms, or a UTC date-time `YYYY-MM-DDTHH:MM[:SS]` (a space may stand for `T`).
pub fn parse_time(name: &str, value: &Option<String>) -> Result<Option<i64>, AppError> {
    let Some(text) = present(value) else {
        return Ok(None);
    };
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(Some(ms));
    }
    parse_datetime(&text)
        .map(Some)
        .ok_or_else(|| bad(format!("{name} must be unix ms or YYYY-MM-DDTHH:MM in UTC")))
}

/// What a person types or `<input type=datetime-local>` sends: the seconds optional,
/// `T` or a space between date and time, leading zeros optional (`2026-1-5T9:30`).
const DATETIME: &[BorrowedFormatItem<'_>] = format_description!(
    "[year padding:none]-[month padding:none]-[day padding:none][first [T][ ]][hour padding:none]:[minute padding:none][optional [:[second padding:none]]]"
);

/// A UTC date-time (a trailing `Z` allowed) as unix ms; `None` unless it is a real
/// date and time of day.
fn parse_datetime(text: &str) -> Option<i64> {
    let at = PrimitiveDateTime::parse(text.trim_end_matches('Z'), DATETIME).ok()?;
    Some(at.assume_utc().unix_timestamp() * 1000)
}

/// `at:id` keyset cursor.
pub fn parse_cursor(cursor: &Option<String>) -> Result<Option<(i64, String)>, AppError> {
    let Some(cursor) = text("cursor", cursor)? else {
        return Ok(None);
    };
    let (at, id) = cursor.split_once(':').ok_or_else(|| bad("bad cursor"))?;
    let at = at.parse().map_err(|_| bad("bad cursor"))?;
    Ok(Some((at, id.to_owned())))
}

/// The cursor after a full page.
pub fn next_cursor<T>(rows: &[T], limit: i64, key: impl Fn(&T) -> String) -> Option<String> {
    (rows.len() as i64 == limit)
        .then(|| rows.last().map(key))
        .flatten()
}

impl RunsParams {
    pub fn filter(&self) -> Result<RunFilter, AppError> {
        Ok(RunFilter {
            shop_id: text("shop", &self.shop)?,
            status: text("status", &self.status)?,
            model: text("model", &self.model)?,
            prompt_pack_version: text("prompt_pack_version", &self.prompt_pack_version)?,
            from: parse_time("from", &self.from)?,
            to: parse_time("to", &self.to)?,
            text: text("q", &self.q)?,
            before: parse_cursor(&self.cursor)?,
            limit: limit(&self.limit)?,
        })
    }

    /// The filters (not the cursor) as a query string.
    pub fn query_string(&self) -> String {
        encode(&[
            ("shop", &self.shop),
            ("status", &self.status),
            ("model", &self.model),
            ("prompt_pack_version", &self.prompt_pack_version),
            ("from", &self.from),
            ("to", &self.to),
            ("q", &self.q),
            ("limit", &self.limit),
        ])
    }
}

impl EventsParams {
    pub fn filter(&self) -> Result<EventFilter, AppError> {
        Ok(EventFilter {
            event_type: text("type", &self.event_type)?,
            source: text("source", &self.source)?,
            shop_id: text("shop", &self.shop)?,
            request_id: text("request_id", &self.request_id)?,
            from: parse_time("from", &self.from)?,
            to: parse_time("to", &self.to)?,
            before: parse_cursor(&self.cursor)?,
            limit: limit(&self.limit)?,
        })
    }

    pub fn query_string(&self) -> String {
        encode(&[
            ("type", &self.event_type),
            ("source", &self.source),
            ("shop", &self.shop),
            ("request_id", &self.request_id),
            ("from", &self.from),
            ("to", &self.to),
            ("limit", &self.limit),
        ])
    }
}

impl PageParams {
    /// Limit and the id cursor.
    pub fn page(&self) -> Result<(Option<i64>, i64), AppError> {
        let before = match present(&self.cursor) {
            None => None,
            Some(c) => Some(c.parse().map_err(|_| bad("bad cursor"))?),
        };
        Ok((before, limit(&self.limit)?))
    }
}

impl StatsParams {
    /// The window `[from, to)` at `now`, and the window's name when named.
    pub fn window(&self, now: i64) -> Result<(i64, i64, String), AppError> {
        let to = parse_time("to", &self.to)?.unwrap_or(now);
        if let Some(from) = parse_time("from", &self.from)? {
            return Ok((from, to, String::new()));
        }
        let name = present(&self.window).unwrap_or_else(|| "24h".to_owned());
        let span = WINDOWS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, span)| *span)
            .ok_or_else(|| bad("window must be one of 1h, 6h, 24h, 7d, 30d"))?;
        Ok((to - span, to, name))
    }
}

/// `a=1&b=2` of the fields that are set.
pub fn encode(pairs: &[(&str, &Option<String>)]) -> String {
    let mut out = form_urlencoded::Serializer::new(String::new());
    for (name, value) in pairs {
        if let Some(value) = present(value) {
            out.append_pair(name, &value);
        }
    }
    out.finish()
}

/// Percent-encodes one path segment (everything but unreserved characters).
pub fn path_segment(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_ms_or_utc_datetime() {
        let t = |v: &str| parse_time("from", &Some(v.to_owned())).unwrap();
        assert_eq!(t("1700000000000"), Some(1_700_000_000_000));
        assert_eq!(t("2023-11-14T22:13:20"), Some(1_700_000_000_000));
        assert_eq!(t("2023-11-14T22:13"), Some(1_699_999_980_000));
        assert_eq!(t(" "), None);
        assert!(parse_time("from", &Some("yesterday".into())).is_err());
        assert_eq!(t("2024-02-29T00:00"), Some(1_709_164_800_000));
    }

    #[test]
    fn datetimes_take_a_space_a_zone_letter_and_short_fields_but_only_real_ones() {
        let t = |v: &str| parse_time("to", &Some(v.to_owned()));
        assert_eq!(t("2023-11-14 22:13:20Z").unwrap(), Some(1_700_000_000_000));
        assert_eq!(t("2024-1-5T9:30").unwrap(), t("2024-01-05T09:30:00").unwrap());
        for wrong in [
            "2023-02-29T00:00",
            "2023-13-01T00:00",
            "2023-11-14T24:00",
            "2023-11-14T22:13:60",
            "2023-11-14",
            "2023-11-14T22:13:20.5",
        ] {
            let err = t(wrong).unwrap_err();
            assert!(
                matches!(&err, AppError::BadRequest(r) if r == "to must be unix ms or YYYY-MM-DDTHH:MM in UTC"),
                "{wrong}: {err:?}"
            );
        }
    }

    #[test]
    fn control_characters_are_refused_naming_the_parameter() {
        for raw in ["a\0b", "\r\n", "x\u{7f}", "\u{85}"] {
            let err = text("shop", &Some(raw.to_owned())).unwrap_err();
            assert!(
                matches!(&err, AppError::BadRequest(r) if r == "shop must not contain control characters"),
                "{raw:?}: {err:?}"
            );
        }
        assert_eq!(
            text("shop", &Some(" café ".into())).unwrap().as_deref(),
            Some("café")
        );
        assert_eq!(text("shop", &Some(" ".into())).unwrap(), None);
        assert!(parse_cursor(&Some("1:a\0".into())).is_err());
        assert!(run_id("run\0").is_err() && run_id("run-1").is_ok());
    }

    #[test]
    fn path_segments_cannot_escape_their_prefix() {
        assert_eq!(path_segment("a/b?c"), "a%2Fb%3Fc");
        assert_eq!(path_segment("javascript:x"), "javascript%3Ax");
    }
}
