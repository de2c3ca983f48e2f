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

use time::{Date, Month, PrimitiveDateTime, Time, UtcOffset};

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
    let mut at = Reader(text.as_bytes());
    let date = at.date().ok_or(NotATime::Malformed)?;
    if at.0.is_empty() {
        return Err(NotATime::BareDate);
    }
    let time = at.time().ok_or(NotATime::Malformed)?;
    let offset = at.offset().ok_or(NotATime::Malformed)?;
    if !at.0.is_empty() {
        return Err(NotATime::Malformed);
    }
    let nanos = PrimitiveDateTime::new(date, time)
        .assume_offset(offset)
        .unix_timestamp_nanos();
    let ms = nanos.div_euclid(1_000_000) + i128::from(nanos.rem_euclid(1_000_000) != 0);
    i64::try_from(ms).map_err(|_| NotATime::Malformed)
}

/// The rest of a value, read from the front.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    /// Consumes `byte` if it comes next.
    fn eat(&mut self, byte: u8) -> bool {
        match self.0.split_first() {
            Some((first, rest)) if *first == byte => {
                self.0 = rest;
                true
            }
            _ => false,
        }
    }

    /// Consumes one of `bytes`, returning it.
    fn one_of(&mut self, bytes: &[u8]) -> Option<u8> {
        let (first, rest) = self.0.split_first()?;
        bytes.contains(first).then(|| {
            self.0 = rest;
            *first
        })
    }

    /// `min..=max` ASCII digits as a number.
    fn digits(&mut self, min: usize, max: usize) -> Option<u32> {
        let count = self
            .0
            .iter()
            .take(max)
            .take_while(|b| b.is_ascii_digit())
            .count();
        if count < min {
            return None;
        }
        let (digits, rest) = self.0.split_at(count);
        self.0 = rest;
        Some(digits.iter().fold(0, |n, d| n * 10 + u32::from(d - b'0')))
    }

    /// `YYYY-M[M]-D[D]`, a real date.
    fn date(&mut self) -> Option<Date> {
        let year = self.digits(4, 4)?;
        self.eat(b'-').then_some(())?;
        let month = self.digits(1, 2)?;
        self.eat(b'-').then_some(())?;
        let day = self.digits(1, 2)?;
        let month = Month::try_from(u8::try_from(month).ok()?).ok()?;
        Date::from_calendar_date(year as i32, month, u8::try_from(day).ok()?).ok()
    }

    /// `T|t| H[H]:M[M][:S[S][.fraction]]`, a real time of day.
    fn time(&mut self) -> Option<Time> {
        self.one_of(b"Tt ")?;
        let hour = self.digits(1, 2)?;
        self.eat(b':').then_some(())?;
        let minute = self.digits(1, 2)?;
        let (mut second, mut nanos) = (0, 0);
        if self.eat(b':') {
            second = self.digits(1, 2)?;
            if self.eat(b'.') {
                let before = self.0.len();
                let fraction = self.digits(1, 9)?;
                let width = before - self.0.len();
                nanos = fraction * 10u32.pow(9 - width as u32);
            }
        }
        Time::from_hms_nano(
            u8::try_from(hour).ok()?,
            u8::try_from(minute).ok()?,
            u8::try_from(second).ok()?,
            nanos,
        )
        .ok()
    }

    /// `Z|z`, `±HH:MM` (a space standing for an unencoded `+`), or nothing (UTC).
    fn offset(&mut self) -> Option<UtcOffset> {
        if self.0.is_empty() || self.one_of(b"Zz").is_some() {
            return Some(UtcOffset::UTC);
        }
        let sign = match self.one_of(b"+- ")? {
            b'-' => -1,
            _ => 1,
        };
        let hours = self.digits(2, 2)?;
        self.eat(b':').then_some(())?;
        let minutes = self.digits(2, 2)?;
        if hours > 23 || minutes > 59 {
            return None;
        }
        UtcOffset::from_hms(sign * hours as i8, sign * minutes as i8, 0).ok()
    }
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
