//! Retention on SQLite and Postgres: `prune` removes exactly the rows older than the
//! cutoff (runs by `started_at` with their variants, orphan variants by their own time,
//! events by `occurred_at`, dead letters by `received_at`), in small batches; the dry
//! run counts the same rows and deletes nothing; `serve` with `COLLECTOR_RETENTION`
//! prunes while it ingests.

mod common;

use std::time::Duration;

use common::{
    all_rows, batch_of, jetstream, publish_all, run_binary, run_envelopes, settings, spawn,
    wait_until, AllRows, Backend, TestDb,
};
use service_kit::now_ms;
use telemetry_collector::retention::{self, Retention};
use telemetry_collector::store::PruneCounts;
use telemetry_proto::v1::{self, envelope::Body};
use test_support::Isolation;
use tokio_util::sync::CancellationToken;

const DAY_MS: i64 = 86_400_000;

/// `envelopes` moved in time so the first occurs at `at` (1 ms apart).
fn at(mut envelopes: Vec<v1::Envelope>, at: i64) -> Vec<v1::Envelope> {
    for (i, envelope) in envelopes.iter_mut().enumerate() {
        envelope.occurred_at = at + i as i64;
    }
    envelopes
}

/// A variant start and result of a run whose start and completion never arrive.
fn orphan_variant(occurred_at: i64) -> Vec<v1::Envelope> {
    let mut envelopes = run_envelopes("orphans", 0, 99);
    envelopes.retain(|e| {
        matches!(
            e.body,
            Some(Body::VariantStarted(_)) | Some(Body::VariantResult(_))
        )
    });
    at(envelopes, occurred_at)
}

/// An event whose JSON payload is not JSON: a dead letter.
fn bad_event(occurred_at: i64) -> v1::Envelope {
    let mut envelope = at(run_envelopes("bad", 0, 7), occurred_at).remove(0);
    if let Some(Body::Event(event)) = envelope.body.as_mut() {
        event.payload_json = "{not json".into();
    }
    envelope
}

/// What the documented rules keep at `cutoff`.
fn kept(rows: &AllRows, cutoff: i64) -> AllRows {
    let runs: Vec<_> = rows
        .runs
        .iter()
        .filter(|r| r.started_at >= cutoff)
        .cloned()
        .collect();
    let variants = rows
        .variants
        .iter()
        .filter(|v| match rows.runs.iter().find(|r| r.run_id == v.run_id) {
            Some(run) => run.started_at >= cutoff,
            None => v.started_at.or(v.finished_at).unwrap_or(i64::MAX) >= cutoff,
        })
        .cloned()
        .collect();
    AllRows {
        runs,
        variants,
        events: rows
            .events
            .iter()
            .filter(|e| e.occurred_at >= cutoff)
            .cloned()
            .collect(),
        dead_letters: rows
            .dead_letters
            .iter()
            .filter(|d| d.received_at >= cutoff)
            .cloned()
            .collect(),
        producers: rows.producers.clone(),
    }
}

fn difference(before: &AllRows, after: &AllRows) -> PruneCounts {
    let gone = |a: usize, b: usize| (a - b) as u64;
    PruneCounts {
        runs: gone(before.runs.len(), after.runs.len()),
        variants: gone(before.variants.len(), after.variants.len()),
        events: gone(before.events.len(), after.events.len()),
        dead_letters: gone(before.dead_letters.len(), after.dead_letters.len()),
    }
}

async fn prune_removes_exactly_what_is_older_than_the_cutoff(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let now = now_ms();
    let (old, new) = (now - 20 * DAY_MS, now - DAY_MS);

    let mut old_envelopes = Vec::new();
    for run in 0..5 {
        old_envelopes.extend(at(run_envelopes("p-old", 0, run), old + run as i64 * 100));
    }
    // Started long ago, completed recently: the run goes (by its start) with its
    // variants; its recent completion event stays (events go by their own time).
    // The completion arrives with the recent batch: an envelope dated past its receive
    // time by more than a day is refused (`domain::MAX_CLOCK_AHEAD`).
    let mut straddling = at(run_envelopes("p-old", 100, 5), old + 1_000);
    let mut completion = straddling.pop().unwrap();
    completion.occurred_at = new;
    old_envelopes.extend(straddling);
    old_envelopes.extend(orphan_variant(old + 2_000));
    old_envelopes.push(bad_event(old + 3_000));
    old_envelopes.push(bad_event(old + 3_001));
    let mut new_envelopes = Vec::new();
    for run in 10..14 {
        new_envelopes.extend(at(run_envelopes("p-new", 0, run), new + run as i64 * 100));
    }
    new_envelopes.push(completion);
    new_envelopes.extend(orphan_variant(new + 2_000));
    new_envelopes.push(bad_event(new + 3_000));

    store
        .write(&batch_of("telemetry", &old_envelopes, 1, old))
        .await
        .unwrap();
    store
        .write(&batch_of("telemetry", &new_envelopes, 1_000, new))
        .await
        .unwrap();

    let before = all_rows(&db).await;
    let cutoff = now - 10 * DAY_MS;
    let expected = kept(&before, cutoff);
    let expected_counts = difference(&before, &expected);
    // The data straddles the cutoff in every table.
    assert_eq!(expected_counts.runs, 6, "5 old runs and the straddling one");
    assert_eq!(
        expected_counts.variants,
        6 * 2 + 2,
        "their variants and the old orphans"
    );
    assert_eq!(expected.runs.len(), 4);
    assert_eq!(expected.variants.len(), 4 * 2 + 2);
    assert_eq!(expected_counts.dead_letters, 2);
    assert_eq!(expected.dead_letters.len(), 1);
    assert!(expected_counts.events > 0 && !expected.events.is_empty());
    assert!(
        expected
            .events
            .iter()
            .any(|e| e.occurred_at == new && e.kind == "run_completed"),
        "the straddling run's completion event stays"
    );

    // Dry run (through the binary): counts per table, deletes nothing.
    let (_, out) = run_binary(
        &["prune", "--older-than", "10d", "--dry-run"],
        &[("DATABASE_URL", db.url.as_str())],
    );
    for (table, count) in [
        ("render_runs", expected_counts.runs),
        ("variant_results", expected_counts.variants),
        ("monitor_events", expected_counts.events),
        ("dead_letters", expected_counts.dead_letters),
    ] {
        assert!(
            out.lines()
                .any(|line| line.split_whitespace().collect::<Vec<_>>()
                    == [table, &count.to_string()]),
            "dry run prints {table} {count}:\n{out}"
        );
    }
    assert_eq!(store.prune_counts(cutoff).await.unwrap(), expected_counts);
    assert_eq!(all_rows(&db).await, before, "a dry run deletes nothing");

    // The real prune, in steps of 2 rows per table.
    let done = retention::prune(store.as_ref(), cutoff, 2, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(done, expected_counts);
    assert_eq!(all_rows(&db).await, expected);
    let again = retention::prune(store.as_ref(), cutoff, 2, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(again, PruneCounts::default(), "nothing older is left");
    store.close().await;
}
on_both_backends!(prune_removes_exactly_what_is_older_than_the_cutoff);

async fn serve_with_retention_prunes_old_rows_while_it_ingests(backend: Backend) {
    let iso = Isolation::new();
    let db = TestDb::new(backend).await;
    let mut settings = settings(&iso, &db.url);
    settings.retention = Some(Retention {
        max_age: Duration::from_secs(10 * 86_400),
        interval: Duration::from_millis(200),
        batch: 3,
    });
    let collector = spawn(settings).await;
    let js = jetstream(&iso).await;
    let now = now_ms();
    let mut fresh = Vec::new();
    for run in 0..6 {
        let old = at(
            run_envelopes("p", 0, run),
            now - 30 * DAY_MS + run as i64 * 100,
        );
        publish_all(&js, &iso, &old).await;
        let new = at(
            run_envelopes("p", 0, 100 + run),
            now - 1_000 + run as i64 * 10,
        );
        fresh.extend(new.iter().map(|e| e.event_id.clone()));
        publish_all(&js, &iso, &new).await;
    }
    wait_until(
        Duration::from_secs(30),
        "only the fresh rows left",
        || async {
            let rows = all_rows(&db).await;
            let mut ids: Vec<_> = rows.events.iter().map(|e| e.event_id.clone()).collect();
            ids.sort();
            let mut want = fresh.clone();
            want.sort();
            ids == want && rows.runs.len() == 6 && rows.variants.len() == 12
        },
    )
    .await;
    let rows = all_rows(&db).await;
    assert!(rows.runs.iter().all(|r| r.started_at >= now - 10 * DAY_MS));
    collector.stop().await;
}
on_both_backends!(serve_with_retention_prunes_old_rows_while_it_ingests);
