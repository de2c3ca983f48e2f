//! Replay on SQLite and Postgres: rebuilding an empty database from the stream gives
//! exactly the rows live ingest gave (all of `render_runs`, `variant_results`,
//! `monitor_events`, `dead_letters`, `producers`; only `received_at` and the dead
//! letters' surrogate `id` are left out, as they say when and in which order this
//! process wrote), and `--from-seq` replays only the tail.

mod common;

use std::time::Duration;

use common::{
    all_rows, jetstream, publish_all, publish_raw, run_binary, run_envelopes, settings, spawn,
    subjects, wait_until, AllRows, Backend, TestDb,
};
use rand::seq::SliceRandom;
use telemetry_collector::replay::{self, StartAt};
use test_support::Isolation;

/// `rows` without the columns that say when this process wrote them.
fn comparable(mut rows: AllRows) -> AllRows {
    for event in &mut rows.events {
        event.received_at = 0;
    }
    for dead in &mut rows.dead_letters {
        dead.received_at = 0;
        dead.id = 0;
    }
    for producer in &mut rows.producers {
        producer.last_received_at = 0;
    }
    rows
}

async fn replay_into_an_empty_database_equals_live_ingest(backend: Backend) {
    let iso = Isolation::new();
    let live = TestDb::new(backend).await;
    let collector = spawn(settings(&iso, &live.url)).await;
    let js = jetstream(&iso).await;

    // Runs in a shuffled order, some envelopes twice, and two undecodable messages.
    let mut envelopes = Vec::new();
    for run in 0..25 {
        envelopes.extend(run_envelopes(&format!("producer-{}", run % 3), 0, run));
    }
    envelopes.shuffle(&mut rand::rng());
    let again: Vec<_> = envelopes.iter().step_by(9).cloned().collect();
    publish_all(&js, &iso, &envelopes).await;
    let subjects = subjects(&iso);
    publish_raw(
        &js,
        subjects.for_kind(telemetry_proto::BodyKind::Event),
        b"\x01garbage".to_vec(),
    )
    .await;
    publish_all(&js, &iso, &again).await;
    publish_raw(
        &js,
        subjects.for_kind(telemetry_proto::BodyKind::RunStarted),
        vec![0xff; 7],
    )
    .await;
    let published = (envelopes.len() + again.len() + 2) as u64;

    let store = collector.store.clone();
    wait_until(
        Duration::from_secs(30),
        "live ingest stored everything",
        || async {
            store.event_count().await.unwrap_or(0) == envelopes.len() as i64
                && store
                    .dead_letters_after(0, 10)
                    .await
                    .map(|d| d.len())
                    .unwrap_or(0)
                    == 2
        },
    )
    .await;
    collector.stop().await;
    let live_rows = all_rows(&live).await;
    assert_eq!(live_rows.runs.len(), 25);
    assert_eq!(live_rows.variants.len(), 50);

    // Replay from the start into an empty database, in small batches.
    let rebuilt = TestDb::new(backend).await;
    let rebuilt_store = rebuilt.store().await;
    let report = replay::replay(
        &js,
        &iso.stream,
        &subjects,
        rebuilt_store.as_ref(),
        StartAt::Start,
        7,
        &indicatif::ProgressBar::hidden(),
    )
    .await
    .expect("replay");
    rebuilt_store.close().await;
    assert_eq!(report.messages, published);
    assert_eq!(report.last_seq, published);
    assert_eq!(report.stored, envelopes.len() as u64);
    assert_eq!(report.duplicates, again.len() as u64);
    assert_eq!(report.dead_letters, 2);
    assert_eq!(
        comparable(all_rows(&rebuilt).await),
        comparable(live_rows.clone())
    );

    // Replaying again into the same database changes nothing.
    let rebuilt_store = rebuilt.store().await;
    let report = replay::replay(
        &js,
        &iso.stream,
        &subjects,
        rebuilt_store.as_ref(),
        StartAt::Start,
        1_000,
        &indicatif::ProgressBar::hidden(),
    )
    .await
    .expect("second replay");
    rebuilt_store.close().await;
    assert_eq!((report.stored, report.dead_letters), (0, 0));
    assert_eq!(
        comparable(all_rows(&rebuilt).await),
        comparable(live_rows.clone())
    );

    // From a time: before the first message is everything, after the last is nothing.
    let rebuilt_store = rebuilt.store().await;
    let from_time = |at: time::OffsetDateTime| {
        let store = rebuilt_store.clone();
        let (js, stream, subjects) = (js.clone(), iso.stream.clone(), subjects.clone());
        async move {
            replay::replay(
                &js,
                &stream,
                &subjects,
                store.as_ref(),
                StartAt::Time(at),
                1_000,
                &indicatif::ProgressBar::hidden(),
            )
            .await
            .expect("replay from a time")
        }
    };
    let now = time::OffsetDateTime::now_utc();
    assert_eq!(
        from_time(now - time::Duration::hours(1)).await.messages,
        published
    );
    assert_eq!(from_time(now + time::Duration::hours(1)).await.messages, 0);
    rebuilt_store.close().await;

    // The binary, from a sequence: exactly the events stored at or after it.
    let from = published / 2;
    let tail = TestDb::new(backend).await;
    let max_bytes = Isolation::STREAM_MAX_BYTES.to_string();
    let (_, out) = run_binary(
        &["replay", "--from-seq", &from.to_string()],
        &[
            ("DATABASE_URL", tail.url.as_str()),
            ("NATS_URL", iso.nats_url.as_str()),
            ("TELEMETRY_SUBJECT_PREFIX", iso.prefix.as_str()),
            ("TELEMETRY_STREAM", iso.stream.as_str()),
            ("TELEMETRY_STREAM_MAX_BYTES", max_bytes.as_str()),
        ],
    );
    assert!(
        out.contains(&format!("up to sequence {published}")),
        "{out}"
    );
    // Stream order: the envelopes, garbage, the repeats, garbage.
    let in_order: Vec<Option<&str>> = envelopes
        .iter()
        .map(|e| Some(e.event_id.as_str()))
        .chain([None])
        .chain(again.iter().map(|e| Some(e.event_id.as_str())))
        .chain([None])
        .collect();
    let mut want: Vec<String> = in_order
        .iter()
        .skip(from as usize - 1)
        .flatten()
        .map(|id| id.to_string())
        .collect();
    want.sort();
    want.dedup();
    let got: Vec<_> = all_rows(&tail)
        .await
        .events
        .into_iter()
        .map(|e| e.event_id)
        .collect();
    assert!(!want.is_empty() && want.len() < live_rows.events.len());
    assert_eq!(got, want);
}
on_both_backends!(replay_into_an_empty_database_equals_live_ingest);

async fn replay_stops_at_the_last_sequence_it_saw_while_producers_keep_publishing(
    backend: Backend,
) {
    let iso = Isolation::new();
    let js = jetstream(&iso).await;
    let mut first = Vec::new();
    for run in 0..30 {
        first.extend(run_envelopes("early", 0, run));
    }
    publish_all(&js, &iso, &first).await;
    let stop = tokio_util::sync::CancellationToken::new();
    let publisher = {
        let (js, stop, subjects) = (js.clone(), stop.clone(), subjects(&iso));
        tokio::spawn(async move {
            let mut run = 1_000;
            while !stop.is_cancelled() {
                for envelope in run_envelopes("late", 0, run) {
                    let kind = telemetry_proto::BodyKind::of(envelope.body.as_ref().unwrap());
                    let bytes = prost::Message::encode_to_vec(&envelope);
                    publish_raw(&js, subjects.for_kind(kind), bytes).await;
                }
                run += 1;
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
        })
    };
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let before = first.len() as u64;
    let report = tokio::time::timeout(
        Duration::from_secs(60),
        replay::replay(
            &js,
            &iso.stream,
            &subjects(&iso),
            store.as_ref(),
            StartAt::Start,
            50,
            &indicatif::ProgressBar::hidden(),
        ),
    )
    .await
    .expect("replay ends although the stream keeps growing")
    .expect("replay");
    // Let the stream grow past where replay stopped, then stop publishing.
    wait_until(
        Duration::from_secs(10),
        "the stream grew past the replay",
        || {
            let (js, name, last) = (js.clone(), iso.stream.clone(), report.last_seq);
            async move {
                let mut stream = js.get_stream(&name).await.unwrap();
                stream.info().await.unwrap().state.last_sequence > last
            }
        },
    )
    .await;
    stop.cancel();
    publisher.await.unwrap();
    assert!(
        report.last_seq >= before,
        "replayed at least what was there"
    );
    assert_eq!(
        report.messages, report.last_seq,
        "every sequence up to it, once"
    );
    assert_eq!(store.event_count().await.unwrap() as u64, report.last_seq);
    store.close().await;
}
on_both_backends!(replay_stops_at_the_last_sequence_it_saw_while_producers_keep_publishing);
