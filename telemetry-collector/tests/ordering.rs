//! Ordering and time (issue 13, items 6, 8 and 9), on SQLite and on a fresh Postgres
//! database each:
//! - events created in the same millisecond are shown in the order their producer made
//!   them (time, then producer, then `producer_seq`), on a run's page, in the events
//!   list and across its pages, whatever their event ids say;
//! - an `occurred_at` far ahead of the collector's clock cannot pin a run to the top of
//!   `/monitor`;
//! - one event id used for two different bodies gives the same rows whether or not
//!   the two share a batch: the first stored wins, the other is a dead letter naming
//!   the conflict.

mod common;
mod monitor_support;

use std::sync::Arc;

use common::{batch_of, Backend, TestDb};
use monitor_support::*;
use serde_json::Value;
use telemetry_collector::config::MonitorSettings;
use telemetry_collector::dead_letters::{self, Selection};
use telemetry_collector::store::Store;
use telemetry_proto::{v1, Subjects};
use tokio_util::sync::CancellationToken;

fn monitor(store: &Arc<dyn Store>) -> axum::Router {
    app(
        store.clone(),
        MonitorSettings::default(),
        CancellationToken::new(),
    )
}

async fn json(app: &axum::Router, path: &str) -> Value {
    let answer = get(app, path, &[]).await;
    assert_eq!(answer.status, 200, "{path}: {}", answer.body);
    answer.json()
}

fn seqs(events: &Value) -> Vec<i64> {
    events
        .as_array()
        .expect("a list of events")
        .iter()
        .map(|e| e["producer_seq"].as_i64().unwrap())
        .collect()
}

/// A run whose every envelope has one `occurred_at` and whose event ids sort in the
/// reverse of the order they were made (ids are UUIDv7, random within a millisecond).
fn same_millisecond_run(at: i64) -> (RunSpec, Vec<v1::Envelope>) {
    let run = RunSpec::new(7, at);
    let mut envelopes = run.envelopes();
    let mut ids: Vec<String> = envelopes
        .iter()
        .map(|_| uuid::Uuid::now_v7().to_string())
        .collect();
    ids.sort();
    ids.reverse();
    for (envelope, id) in envelopes.iter_mut().zip(ids) {
        envelope.occurred_at = at;
        envelope.event_id = id;
    }
    (run, envelopes)
}

async fn same_millisecond_events_keep_their_producers_order(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let (run, envelopes) = same_millisecond_run(1_700_000_000_000);
    let n = envelopes.len() as i64;
    seed(&store, &envelopes, &[]).await;
    let app = monitor(&store);

    let detail = json(&app, &format!("/api/v1/runs/{}", run.run_id)).await;
    let made: Vec<i64> = (1..=n).collect();
    assert_eq!(seqs(&detail["events"]), made, "the run's timeline");
    let page = get(&app, &format!("/monitor/runs/{}", run.run_id), &[]).await;
    let started = page.body.find(">run_started<").expect("run_started shown");
    let variant = page
        .body
        .find(">variant_started<")
        .expect("variant_started shown");
    let completed = page
        .body
        .find(">run_completed<")
        .expect("run_completed shown");
    let last_result = page
        .body
        .rfind(">variant_result<")
        .expect("variant_result shown");
    assert!(
        started < variant && last_result < completed,
        "timeline order on the page"
    );

    let newest_first: Vec<i64> = made.iter().rev().copied().collect();
    let request = enc(&run.request_id);
    let list = json(&app, &format!("/api/v1/events?request_id={request}")).await;
    assert_eq!(seqs(&list["events"]), newest_first, "the events list");
    // Page by page, two at a time: the same order, nothing skipped or repeated.
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/v1/events?request_id={request}&limit=2");
        if let Some(cursor) = &cursor {
            path.push_str(&format!("&cursor={}", enc(cursor)));
        }
        let page = json(&app, &path).await;
        paged.extend(seqs(&page["events"]));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(paged, newest_first, "the events list, page by page");
}
on_both_backends!(same_millisecond_events_keep_their_producers_order);

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Dead letters as `(stream_seq, reason)`, sorted.
async fn dead_letters(app: &axum::Router) -> Vec<(i64, String)> {
    let list = json(app, "/api/v1/dead-letters").await;
    let mut dead: Vec<(i64, String)> = list["dead_letters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["stream_seq"].as_i64().unwrap(),
                d["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    dead.sort();
    dead
}

async fn a_clock_far_ahead_cannot_pin_runs_to_the_top(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let now = now_ms();
    let honest = RunSpec::new(1, now - 60_000);
    // One hour ahead: a bad clock, but within the bound: stored as sent.
    let early = RunSpec::new(2, now + 3_600_000);
    // The year 9999.
    let broken = RunSpec::new(3, 253_402_300_799_000);
    let mut envelopes = honest.envelopes();
    envelopes.extend(early.envelopes());
    let first_broken = envelopes.len() as u64 + 1;
    envelopes.extend(broken.envelopes());
    store
        .write(&batch_of("telemetry", &envelopes, 1, now))
        .await
        .expect("write");
    let app = monitor(&store);
    let runs = json(&app, "/api/v1/runs").await;
    let ids: Vec<&str> = runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["run_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [early.run_id.as_str(), honest.run_id.as_str()]);
    let dead = dead_letters(&app).await;
    let broken_seqs: Vec<i64> = (first_broken..=envelopes.len() as u64)
        .map(|s| s as i64)
        .collect();
    assert_eq!(
        dead.iter().map(|(seq, _)| *seq).collect::<Vec<_>>(),
        broken_seqs,
        "every envelope of the broken clock is a dead letter: {dead:?}"
    );
    let reason = &dead[0].1;
    assert!(
        reason.contains("occurred_at 9999-12-31")
            && reason.contains("ahead of the collector's clock"),
        "{reason}"
    );
}
on_both_backends!(a_clock_far_ahead_cannot_pin_runs_to_the_top);

/// Two envelopes with one event id: run A's start (stream seq 1), and, sent later
/// with the same id, run B's start (stream seq 2), plus an identical copy of the first
/// (seq 3, a producer's retry).
fn one_id_two_bodies() -> (RunSpec, RunSpec, Vec<v1::Envelope>) {
    let a = RunSpec::new(1, 1_700_000_000_000);
    let b = RunSpec::new(2, 1_700_000_000_500);
    let start = |run: &RunSpec| {
        run.envelopes()
            .into_iter()
            .find(|e| matches!(e.body, Some(v1::envelope::Body::RunStarted(_))))
            .unwrap()
    };
    let first = start(&a);
    let mut second = start(&b);
    second.event_id = first.event_id.clone();
    (a, b, vec![first.clone(), second, first])
}

async fn one_event_id_two_bodies_gives_one_result(backend: Backend) {
    let (a, b, envelopes) = one_id_two_bodies();
    let mut results = Vec::new();
    for split in [false, true] {
        let db = TestDb::new(backend).await;
        let store = db.store().await;
        if split {
            for (i, envelope) in envelopes.iter().enumerate() {
                store
                    .write(&batch_of(
                        "telemetry",
                        std::slice::from_ref(envelope),
                        i as u64 + 1,
                        1_700_000_001_000,
                    ))
                    .await
                    .expect("write");
            }
        } else {
            store
                .write(&batch_of("telemetry", &envelopes, 1, 1_700_000_001_000))
                .await
                .expect("write");
        }
        let app = monitor(&store);
        let runs = json(&app, "/api/v1/runs").await;
        let ids: Vec<String> = runs["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["run_id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            ids,
            std::slice::from_ref(&a.run_id),
            "split={split}: the first wins"
        );
        assert!(!ids.contains(&b.run_id));
        let dead = dead_letters(&app).await;
        assert_eq!(dead.len(), 1, "split={split}: only the second: {dead:?}");
        assert_eq!(dead[0].0, 2, "split={split}");
        assert!(
            dead[0].1.contains(&envelopes[0].event_id)
                && dead[0]
                    .1
                    .contains("already stored from a different envelope (stream seq 1)"),
            "split={split}: {}",
            dead[0].1
        );
        let before = common::snapshot(&store).await;
        // Requeued, the conflicting envelope parses but is refused again: it stays a
        // dead letter (not deleted as resolved) and the rows do not change.
        let report = dead_letters::requeue(
            store.as_ref(),
            &Subjects::new("telemetry").unwrap(),
            &Selection::All,
        )
        .await
        .expect("requeue");
        assert_eq!(
            (report.requeued, report.still_failing),
            (0, 1),
            "split={split}"
        );
        assert_eq!(dead_letters(&app).await, dead, "split={split}: still there");
        assert_eq!(common::snapshot(&store).await, before, "split={split}");
        results.push((before, dead));
    }
    assert_eq!(results[0], results[1], "one batch or three: the same rows");
}
on_both_backends!(one_event_id_two_bodies_gives_one_result);
