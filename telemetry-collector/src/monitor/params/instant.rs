//! Time filters (`from`, `to`) as instants: unix ms, or an RFC 3339 date-time read
//! whole, so an offset moves the instant and a fraction of a second is kept.
//!
//! Accepted: `YYYY-MM-DD`, then `T`, `t` or a space, then `HH:MM[:SS[.fraction]]`,
//! then `Z`, `z`, `±HH:MM` or nothing. Deliberate choices where RFC 3339 (or a person
//! typing) leaves room:
//! - No offset means UTC, as the monitor has always read it, and the form's
//!   `<input type=datetime-local>` sends no offset (nor seconds, so they are
//!   optional); month, day, hour and minute may drop a leading zero (`2026-1-5T9:30`).
//! - A bare date is refused: whether `to=2026-11-29` means that day's start or its
//!   end is a guess, and a wrong guess silently drops a day of rows.
//! - Stored times are unix ms. A fraction finer than that rounds *up* to the next
//!   millisecond, which selects exactly the rows of `[from, to)`: a row at a whole
//!   millisecond is at or after the instant exactly when it is at or after that
//!   rounded value (the same holds for before). At most 9 digits (nanoseconds).
//! - A `+` left unencoded in a query string arrives as a space; a space followed by
//!   `HH:MM` where the offset goes is read as that `+` offset rather than refused,
//!   since nothing else can be meant there.
//! - A leap second (`:60`) has no unix time and is refused, as are offsets beyond
//!   `±23:59` and offsets without the colon (`+0200`), which RFC 3339 does not allow.

use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::{Date, PrimitiveDateTime, UtcOffset};

/// The date and time of day, up to the offset (read apart: see [`split_offset`]).
const DATE_TIME: &[BorrowedFormatItem<'_>] = format_description!(
    "[year]-[month padding:none]-[day padding:none][first [T][t][ ]]\
     [hour padding:none]:[minute padding:none]\
     [optional [:[second padding:none][optional [.[subsecond digits:1+]]]]]"
);
/// A date alone (refused as [`NotATime::BareDate`]).
const DATE: &[BorrowedFormatItem<'_>] =
    format_description!("[year]-[month padding:none]-[day padding:none]");
/// `+HH:MM` / `-HH:MM`.
const OFFSET: &[BorrowedFormatItem<'_>] =
    format_description!("[offset_hour sign:mandatory]:[offset_minute]");

/// Why a value is not a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotATime {
    /// A date alone, with no time of day.
    BareDate,
    /// Anything else that is not one of the accepted forms, or not a real date, time
    /// of day or offset.
    Malformed,
}

/// A time filter's value as unix ms: an integer as it is, a date-time as above.
pub fn parse(text: &str) -> Result<i64, NotATime> {
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    date_time(text)
}

/// An RFC 3339 date-time (with the allowances in the module doc) as unix ms, rounded
/// up to the next whole millisecond.
fn date_time(text: &str) -> Result<i64, NotATime> {
    // `time` reads any number of fraction digits; past nanoseconds (9) a digit says
    // nothing, so more is a mistake.
    let fraction = text
        .split_once('.')
        .map_or(0, |(_, f)| f.bytes().take_while(u8::is_ascii_digit).count());
    if fraction > 9 {
        return Err(NotATime::Malformed);
    }
    let read = |(rest, offset): (&str, UtcOffset)| {
        PrimitiveDateTime::parse(rest, DATE_TIME)
            .ok()
            .map(|at| at.assume_offset(offset))
    };
    // A trailing ` HH:MM` is an offset (an unencoded `+`) unless the value reads
    // only without it (`2026-11-29 09:30`, a space before the time of day).
    let at = split_offset(text)
        .and_then(read)
        .or_else(|| read((text, UtcOffset::UTC)))
        .ok_or(if Date::parse(text, DATE).is_ok() {
            NotATime::BareDate
        } else {
            NotATime::Malformed
        })?;
    let nanos = at.unix_timestamp_nanos();
    let ms = nanos.div_euclid(1_000_000) + i128::from(nanos.rem_euclid(1_000_000) != 0);
    i64::try_from(ms).map_err(|_| NotATime::Malformed)
}

/// The value without its offset, and the offset: `Z` / `z`, `±HH:MM` (a space standing
/// for an unencoded `+`; at most `±23:59`), or `None` when it ends otherwise.
fn split_offset(text: &str) -> Option<(&str, UtcOffset)> {
    if let Some(rest) = text.strip_suffix(['Z', 'z']) {
        return Some((rest, UtcOffset::UTC));
    }
    let at = text.len().checked_sub(6)?;
    let (rest, offset) = (text.get(..at)?, text.get(at..)?);
    let offset = offset
        .strip_prefix(' ')
        .map_or(offset.to_owned(), |o| format!("+{o}"));
    let offset = UtcOffset::parse(&offset, OFFSET).ok()?;
    (offset.whole_hours().abs() <= 23).then_some((rest, offset))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2023-11-14T22:13:20Z.
    const BASE: i64 = 1_700_000_000_000;

    #[test]
    fn offsets_move_the_instant_and_no_offset_is_utc() {
        assert_eq!(parse("2023-11-14T22:13:20Z"), Ok(BASE));
        assert_eq!(parse("2023-11-14T22:13:20"), Ok(BASE));
        assert_eq!(parse("2023-11-14t22:13:20z"), Ok(BASE));
        assert_eq!(parse("2023-11-15T00:13:20+02:00"), Ok(BASE));
        assert_eq!(parse("2023-11-15 00:13:20 02:00"), Ok(BASE));
        assert_eq!(parse("2023-11-14T17:13:20-05:00"), Ok(BASE));
        assert_eq!(parse("2023-11-15T03:43:20+05:30"), Ok(BASE));
        assert_eq!(parse("2023-11-14T22:13:20-00:00"), Ok(BASE));
        assert_eq!(parse("2023-11-14T22:13"), Ok(BASE - 20_000));
        assert_eq!(
            parse("2023-11-14T22:13 02:00"),
            Ok(BASE - 20_000 - 7_200_000)
        );
        assert_eq!(parse("2024-1-5T9:30"), parse("2024-01-05T09:30:00"));
        assert_eq!(parse("1700000000000"), Ok(BASE));
        assert_eq!(parse("-5"), Ok(-5));
    }

    #[test]
    fn fractions_keep_the_millisecond_and_round_finer_ones_up() {
        assert_eq!(parse("2023-11-14T22:13:20.5Z"), Ok(BASE + 500));
        assert_eq!(parse("2023-11-14T22:13:20.500Z"), Ok(BASE + 500));
        assert_eq!(parse("2023-11-14T22:13:20.123"), Ok(BASE + 123));
        assert_eq!(parse("2023-11-14T22:13:20.1234Z"), Ok(BASE + 124));
        assert_eq!(parse("2023-11-14T22:13:20.123000000Z"), Ok(BASE + 123));
        assert_eq!(parse("2023-11-14T22:13:20.000000001Z"), Ok(BASE + 1));
        // Before 1970 too: up is towards the future.
        assert_eq!(parse("1969-12-31T23:59:59.9995Z"), Ok(0));
        assert_eq!(parse("1969-12-31T23:59:59.999Z"), Ok(-1));
    }

    #[test]
    fn anything_else_is_refused() {
        assert_eq!(parse("2023-11-14"), Err(NotATime::BareDate));
        for wrong in [
            "",
            "yesterday",
            "1700000000000.5",
            "2023-02-29T00:00",
            "2023-13-01T00:00",
            "2023-11-14T24:00",
            "2023-11-14T22:13:60Z",
            "2023-11-14T22:13:20.Z",
            "2023-11-14T22:13:20.1234567891Z",
            "2023-11-14T22:13.5Z",
            "2023-11-14T22:13:20+0200",
            "2023-11-14T22:13:20+02",
            "2023-11-14T22:13:20+24:00",
            "2023-11-14T22:13:20+02:60",
            "2023-11-14T22:13:20 +02:00",
            "2023-11-14T22:13:20UTC",
            "2023-11-14T22:13:20Zx",
            "23-11-14T22:13",
            "2023-11-14X22:13",
        ] {
            assert_eq!(parse(wrong), Err(NotATime::Malformed), "{wrong:?}");
        }
    }
}
