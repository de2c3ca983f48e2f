//! Time filters (`from`, `to`) read RFC 3339 whole (issue 13, item 7): an offset moves
//! the instant, a fraction of a second is kept to the millisecond, a value without an
//! offset is UTC, and anything else is a 400 that names the parameter and says what
//! is accepted. Runs (and their request events) are seeded 1 ms either side of every
//! instant the cases name, so a misread offset or a dropped fraction selects other
//! rows; each case is checked as `from` and as `to`, on the runs and the events lists
//! and the overview's window, on SQLite and on Postgres.

mod common;
mod monitor_support;

use std::collections::BTreeSet;

use common::{Backend, TestDb};
use monitor_support::*;
use telemetry_collector::config::MonitorSettings;
use time::macros::datetime;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

/// A time filter as a client writes it in a query string, and the instant it means.
struct Case {
    query_value: &'static str,
    means: OffsetDateTime,
}

fn cases() -> Vec<Case> {
    let case = |query_value, means| Case { query_value, means };
    vec![
        // Offsets: the same wall-clock time is three different instants.
        case(
            "2023-11-14T21:03:00%2B02:00",
            datetime!(2023-11-14 19:03 UTC),
        ),
        case("2023-11-14T21:03:00-05:00", datetime!(2023-11-15 02:03 UTC)),
        case("2023-11-14T21:03:00Z", datetime!(2023-11-14 21:03 UTC)),
        case(
            "2023-11-15T00:33:00%2B05:30",
            datetime!(2023-11-14 19:03 UTC),
        ),
        case("2023-11-14T21:03:00-00:00", datetime!(2023-11-14 21:03 UTC)),
        // No offset: UTC (also what `<input type=datetime-local>` sends).
        case("2023-11-14T21:03:00", datetime!(2023-11-14 21:03 UTC)),
        case("2023-11-14T21:03", datetime!(2023-11-14 21:03 UTC)),
        case("2023-11-14%2021:03", datetime!(2023-11-14 21:03 UTC)),
        // A `+` left unencoded arrives as a space: still the offset it was.
        case("2023-11-14T21:03:00+02:00", datetime!(2023-11-14 19:03 UTC)),
        // Lower-case `t` and `z` (RFC 3339 allows them).
        case("2023-11-14t21:03:00z", datetime!(2023-11-14 21:03 UTC)),
        // Fractions, to the millisecond, with or without an offset.
        case(
            "2023-11-14T21:03:45.500Z",
            datetime!(2023-11-14 21:03:45.5 UTC),
        ),
        case(
            "2023-11-14T21:03:45.5Z",
            datetime!(2023-11-14 21:03:45.5 UTC),
        ),
        case(
            "2023-11-14T23:03:45.250%2B02:00",
            datetime!(2023-11-14 21:03:45.25 UTC),
        ),
        case(
            "2023-11-14T21:03:45.25",
            datetime!(2023-11-14 21:03:45.25 UTC),
        ),
        // Finer than a millisecond: rows are whole ms, the instant is between two.
        case(
            "2023-11-14T21:03:45.2495Z",
            datetime!(2023-11-14 21:03:45.2495 UTC),
        ),
        case(
            "2023-11-14T21:03:45.250000001Z",
            datetime!(2023-11-14 21:03:45.250000001 UTC),
        ),
        // Unix ms, as before.
        case("1699995825500", datetime!(2023-11-14 21:03:45.5 UTC)),
    ]
}

fn unix_ns(at: OffsetDateTime) -> i128 {
    at.unix_timestamp_nanos()
}

/// Run start times: 1 ms before, at, and 1 ms after every instant of [`cases`] (the
/// whole millisecond around a sub-millisecond one), and the whole second of each.
fn seeded_times() -> BTreeSet<i64> {
    let mut times = BTreeSet::new();
    for case in cases() {
        let ns = unix_ns(case.means);
        let floor = ns.div_euclid(1_000_000) as i64;
        for ms in [floor - 1, floor, floor + 1, floor + 2] {
            times.insert(ms);
        }
        times.insert(floor - floor.rem_euclid(1000));
    }
    times
}

/// The seeded times the filter `name=case` keeps: `from` is inclusive, `to` exclusive.
fn expected(times: &BTreeSet<i64>, name: &str, case: &Case) -> BTreeSet<i64> {
    let instant = unix_ns(case.means);
    times
        .iter()
        .copied()
        .filter(|ms| {
            let at = i128::from(*ms) * 1_000_000;
            match name {
                "from" => at >= instant,
                _ => at < instant,
            }
        })
        .collect()
}

/// `started_at` (runs) or `occurred_at` (events) of every row of a page.
fn times_of(page: &serde_json::Value, list: &str, field: &str) -> BTreeSet<i64> {
    page[list]
        .as_array()
        .unwrap_or_else(|| panic!("no {list} in {page}"))
        .iter()
        .map(|row| row[field].as_i64().unwrap())
        .collect()
}

async fn from_and_to_honour_offsets_and_fractions(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let times = seeded_times();
    let envelopes: Vec<_> = times
        .iter()
        .enumerate()
        .flat_map(|(n, at)| RunSpec::new(n, *at).envelopes())
        .collect();
    seed(&store, &envelopes, &[]).await;
    let app = app(store, MonitorSettings::default(), CancellationToken::new());
    // Every case is tried; the failures are listed together.
    let mut wrong: Vec<String> = Vec::new();
    let read = |path: String, list: &'static str, field: &'static str| {
        let app = app.clone();
        async move {
            let answer = get(&app, &path, &[]).await;
            match answer.status {
                200 => Ok(times_of(&answer.json(), list, field)),
                status => Err(format!("{path}: {status} {}", answer.body)),
            }
        }
    };
    for case in cases() {
        for name in ["from", "to"] {
            let filter = format!("{name}={}", case.query_value);
            let want = expected(&times, name, &case);
            for (path, list, field) in [
                (
                    format!("/api/v1/runs?limit=500&{filter}"),
                    "runs",
                    "started_at",
                ),
                (
                    format!("/api/v1/events?type=sf_render_requested&limit=500&{filter}"),
                    "events",
                    "occurred_at",
                ),
            ] {
                match read(path.clone(), list, field).await {
                    Ok(got) if got == want => {}
                    Ok(got) => wrong.push(format!(
                        "{path} (meaning {}): {} rows, not {}: {:?} extra, {:?} missing",
                        case.means,
                        got.len(),
                        want.len(),
                        got.difference(&want).collect::<Vec<_>>(),
                        want.difference(&got).collect::<Vec<_>>(),
                    )),
                    Err(refused) => wrong.push(refused),
                }
            }
        }
        // The overview's window says which instants it read.
        let ns = unix_ns(case.means);
        if ns % 1_000_000 == 0 {
            let ms = (ns / 1_000_000) as i64;
            for (path, bound) in [
                (
                    format!(
                        "/api/v1/stats?from={}&to={}",
                        case.query_value,
                        ms + 3_600_000
                    ),
                    "from",
                ),
                (
                    format!("/api/v1/stats?to={}&window=1h", case.query_value),
                    "to",
                ),
            ] {
                let answer = get(&app, &path, &[]).await;
                if answer.status != 200 {
                    wrong.push(format!("{path}: {} {}", answer.status, answer.body));
                } else if answer.json()[bound] != ms {
                    wrong.push(format!("{path}: {bound} {} not {ms}", answer.json()[bound]));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "misread time filters:\n{}",
        wrong.join("\n")
    );

    // The pages read them the same way.
    let page = get(&app, "/monitor?from=2023-11-14T21:03:45.500Z", &[]).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let page = get(&app, "/monitor/events?to=2023-11-14T21:03:00%2B02:00", &[]).await;
    assert_eq!(page.status, 200, "{}", page.body);
}
on_both_backends!(from_and_to_honour_offsets_and_fractions);

async fn other_times_are_a_400_naming_the_parameter_and_the_forms(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    seed(&store, &RunSpec::new(1, 1_700_000_000_000).envelopes(), &[]).await;
    let app = app(store, MonitorSettings::default(), CancellationToken::new());
    let refused = [
        // A bare date: which instant of the day is not said.
        "2023-11-14",
        // Offsets RFC 3339 does not allow, or no offset can be.
        "2023-11-14T21:03:00%2B0200",
        "2023-11-14T21:03:00%2B02",
        "2023-11-14T21:03:00%2B24:00",
        "2023-11-14T21:03:00%2B02:60",
        "2023-11-14T21:03:00UTC",
        // Fractions: empty, or finer than nanoseconds.
        "2023-11-14T21:03:45.Z",
        "2023-11-14T21:03:45.1234567891Z",
        // Not a date or time of day.
        "2023-02-29T00:00Z",
        "2023-11-14T24:00:00Z",
        "2023-11-14T21:03:60Z",
        "yesterday",
        "1699995825500.5",
    ];
    for value in refused {
        for (path, name) in [
            ("/api/v1/runs", "from"),
            ("/api/v1/events", "to"),
            ("/api/v1/stats", "from"),
            ("/monitor", "to"),
        ] {
            let answer = get(&app, &format!("{path}?{name}={value}"), &[]).await;
            assert_eq!(answer.status, 400, "{path}?{name}={value}: {}", answer.body);
            assert!(
                answer.body.contains(&format!("{name} must be"))
                    && answer.body.contains("RFC 3339")
                    && answer.body.contains("unix ms"),
                "{path}?{name}={value}: the refusal names {name} and the accepted forms: {}",
                answer.body
            );
        }
    }
}
on_both_backends!(other_times_are_a_400_naming_the_parameter_and_the_forms);
