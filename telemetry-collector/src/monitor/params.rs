//! What every resource's query string is read with (each resource declares its own
//! parameters, a struct read through [`Params`]): texts, limits, times, cursors, and
//! the way back to links (next page, live stream). Empty fields (what an HTML form
//! sends) mean "no filter". Times are unix ms or RFC 3339 date-times ([`instant`]).
//!
//! A query parameter the resource does not read is a 400 naming it ([`names`]): a
//! misspelt filter (`statuss=failed`) must not quietly answer everything unfiltered.
//!
//! Every text a filter (or a run id in a path) passes on to the store is refused with a
//! 400 naming the parameter when it holds a control character (`%00`, CR, LF, DEL,
//! ...): Postgres `text` cannot hold NUL, and no id, name or version holds any of them
//! (the parse edge dead-letters envelopes whose ids do).

pub mod instant;
pub mod names;

pub use names::{NoParams, Params};

use crate::http::AppError;
use crate::store::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};

/// What a time filter accepts, as every refusal says it.
pub const TIME_FORMS: &str = "unix ms or an RFC 3339 date-time: 2026-11-29T13:45:07.250Z, \
     2026-11-29T15:45+02:00 (no offset: UTC; seconds and their fraction optional)";

/// A 400 with `reason`.
pub fn bad(reason: impl Into<String>) -> AppError {
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

/// A page size: [`DEFAULT_PAGE_SIZE`] when blank, else 1 to [`MAX_PAGE_SIZE`].
pub fn limit(value: &Option<String>) -> Result<i64, AppError> {
    match present(value) {
        None => Ok(DEFAULT_PAGE_SIZE),
        Some(text) => match text.parse::<i64>() {
            Ok(n) if (1..=MAX_PAGE_SIZE).contains(&n) => Ok(n),
            _ => Err(bad(format!("limit must be between 1 and {MAX_PAGE_SIZE}"))),
        },
    }
}

/// Unix ms or an RFC 3339 date-time ([`instant`]); 400 naming `name` and
/// [`TIME_FORMS`] otherwise.
pub fn parse_time(name: &str, value: &Option<String>) -> Result<Option<i64>, AppError> {
    let Some(text) = present(value) else {
        return Ok(None);
    };
    instant::parse(&text).map(Some).map_err(|why| {
        let hint = match why {
            instant::NotATime::BareDate => "; a date alone is not enough: add a time of day",
            instant::NotATime::Malformed => "",
        };
        bad(format!("{name} must be {TIME_FORMS}{hint}"))
    })
}

/// What [`parse_cursor`] refuses.
/// The quick ranges of the runs and events lists (`range=1h`: in the last hour before
/// `to`, or before now), with their length in ms.
pub const RANGES: [(&str, i64); 6] = [
    ("15m", 15 * 60_000),
    ("1h", 3_600_000),
    ("6h", 6 * 3_600_000),
    ("24h", 24 * 3_600_000),
    ("7d", 7 * 24 * 3_600_000),
    ("30d", 30 * 24 * 3_600_000),
];

/// `[from, to)` of a list: `from`/`to` as given, a quick `range` before `to` (or before
/// `now`) narrowing `from`.
pub fn quick_window(
    range: &Option<String>,
    from: &Option<String>,
    to: &Option<String>,
    now: i64,
) -> Result<(Option<i64>, Option<i64>), AppError> {
    let from = parse_time("from", from)?;
    let to = parse_time("to", to)?;
    let Some(range) = text("range", range)? else {
        return Ok((from, to));
    };
    let span = RANGES
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(&range))
        .map(|(_, span)| *span)
        .ok_or_else(|| bad("range must be one of 15m, 1h, 6h, 24h, 7d, 30d"))?;
    let start = to.unwrap_or(now).saturating_sub(span);
    Ok((Some(from.map_or(start, |from| from.max(start))), to))
}

/// A quick range link above a list.
#[derive(Debug, Clone)]
pub struct QuickRange {
    pub label: &'static str,
    pub href: String,
    pub current: bool,
}

/// The quick ranges of a list at `path` as links keeping its other filters (`others`,
/// a query string without the time ones; `any time`: no time filter), each with whether
/// it is the one shown.
pub fn range_links(
    path: &str,
    others: &str,
    range: &Option<String>,
    from: &Option<String>,
    to: &Option<String>,
) -> Vec<QuickRange> {
    let chosen = present(range).map(|r| r.to_ascii_lowercase());
    let unbounded = chosen.is_none() && present(from).is_none() && present(to).is_none();
    let link = |range: Option<&str>| {
        let range = range.map(|r| encode(&[("range", &Some(r.to_owned()))]));
        match (others, range.as_deref().unwrap_or("")) {
            ("", "") => path.to_owned(),
            (q, "") | ("", q) => format!("{path}?{q}"),
            (others, range) => format!("{path}?{others}&{range}"),
        }
    };
    let mut links = vec![QuickRange {
        label: "any time",
        href: link(None),
        current: unbounded,
    }];
    links.extend(RANGES.iter().map(|(name, _)| QuickRange {
        label: name,
        href: link(Some(name)),
        current: chosen.as_deref() == Some(*name),
    }));
    links
}

pub const BAD_CURSOR: &str = "cursor must be the next_cursor of a previous page";

/// `at:id` keyset cursor.
pub fn parse_cursor(cursor: &Option<String>) -> Result<Option<(i64, String)>, AppError> {
    let Some(cursor) = text("cursor", cursor)? else {
        return Ok(None);
    };
    let (at, id) = cursor.split_once(':').ok_or_else(|| bad(BAD_CURSOR))?;
    let at = at.parse().map_err(|_| bad(BAD_CURSOR))?;
    Ok(Some((at, id.to_owned())))
}

/// One page of a list, read once for both of its renderings (HTML and JSON).
#[derive(Debug)]
pub struct Listed<T> {
    pub rows: Vec<T>,
    /// The cursor of the next page: the last row's, after a full page.
    pub next_cursor: Option<String>,
    /// No cursor was given: the newest rows, which a page can follow live.
    pub first: bool,
}

impl<T> Listed<T> {
    /// `rows` read with `limit` (and a cursor unless `first`); `key` is a row's cursor.
    pub fn new(rows: Vec<T>, limit: i64, first: bool, key: impl Fn(&T) -> String) -> Self {
        let next_cursor = (rows.len() as i64 == limit)
            .then(|| rows.last().map(key))
            .flatten();
        Self {
            rows,
            next_cursor,
            first,
        }
    }

    /// The next page's link: `path` with the filters and the cursor; `None` on the
    /// last page.
    pub fn next_href(&self, path: &str, filters: &str) -> Option<String> {
        let cursor = self.next_cursor.as_deref()?;
        let cursor = form_urlencoded::Serializer::new(String::new())
            .append_pair("cursor", cursor)
            .finish();
        Some(match filters {
            "" => format!("{path}?{cursor}"),
            filters => format!("{path}?{filters}&{cursor}"),
        })
    }

    /// The live stream's link (`path` with the filters), on the first page only.
    pub fn live_url(&self, path: &str, filters: &str) -> Option<String> {
        self.first.then(|| join(path, filters))
    }
}

/// `path?query`, or `path` alone when the query is empty.
fn join(path: &str, query: &str) -> String {
    if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{query}")
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
    fn times_parse_as_ms_or_rfc3339_and_blank_is_no_filter() {
        let t = |v: &str| parse_time("from", &Some(v.to_owned())).unwrap();
        assert_eq!(t("1700000000000"), Some(1_700_000_000_000));
        assert_eq!(t("2023-11-14T22:13:20"), Some(1_700_000_000_000));
        assert_eq!(t("2023-11-14T22:13"), Some(1_699_999_980_000));
        assert_eq!(t("2023-11-15T00:13:20.5+02:00"), Some(1_700_000_000_500));
        assert_eq!(t(" "), None);
        assert_eq!(parse_time("from", &None).unwrap(), None);
    }

    #[test]
    fn refused_times_name_the_parameter_and_the_accepted_forms() {
        let refusal = |v: &str| match parse_time("to", &Some(v.to_owned())) {
            Err(AppError::BadRequest(reason)) => reason,
            other => panic!("{v}: {other:?}"),
        };
        assert_eq!(refusal("yesterday"), format!("to must be {TIME_FORMS}"));
        assert_eq!(
            refusal("2023-11-14"),
            format!("to must be {TIME_FORMS}; a date alone is not enough: add a time of day")
        );
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
