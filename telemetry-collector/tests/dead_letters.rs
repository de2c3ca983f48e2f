//! Dead letters on SQLite and Postgres: `requeue` re-runs this build's decoder on the
//! stored bytes. "After a fix" is simulated honestly: rows inserted as an older decoder
//! would have stored them (bytes that are valid today, with that decoder's reason),
//! beside bytes that still fail. `list`, `show` and `purge` go through the binary.

mod common;

use common::{all_rows, batch_of, run_binary, run_envelopes, Backend, TestDb};
use prost::Message as _;
use telemetry_collector::dead_letters::{self, Selection};
use telemetry_collector::domain::{self, Parsed};
use telemetry_proto::{BodyKind, Subjects};

const OLD_REASON: &str = "undecodable envelope: unknown field 12 (decoder of an older build)";

/// Inserts a dead letter as an older collector would have; returns its id.
async fn insert_dead_letter(db: &TestDb, seq: i64, subject: &str, raw: &[u8]) -> i64 {
    const SQL: &str =
        "INSERT INTO dead_letters (stream, stream_seq, subject, reason, raw, received_at) \
                       VALUES ($1, $2, $3, $4, $5, $6) RETURNING id";
    // The same insert on either pool type.
    macro_rules! insert {
        ($pool:expr) => {{
            let pool = $pool;
            let id = sqlx::query_scalar(SQL)
                .bind("TELEMETRY")
                .bind(seq)
                .bind(subject)
                .bind(OLD_REASON)
                .bind(raw)
                .bind(1_700_000_000_000_i64)
                .fetch_one(&pool)
                .await
                .unwrap();
            pool.close().await;
            id
        }};
    }
    match db.backend {
        Backend::Sqlite => insert!(sqlx::SqlitePool::connect(&db.url).await.unwrap()),
        Backend::Postgres => insert!(sqlx::PgPool::connect(&db.url).await.unwrap()),
    }
}

async fn requeue_moves_what_parses_now_and_keeps_the_rest_with_its_new_error(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let subjects = Subjects::new("telemetry").unwrap();
    let run = run_envelopes("producer-a", 0, 1);
    let start = &run[1];
    let result = &run[4];
    let subject_of = |e: &telemetry_proto::v1::Envelope| {
        subjects
            .for_kind(BodyKind::of(e.body.as_ref().unwrap()))
            .to_owned()
    };

    // Valid today, refused by an older decoder.
    let fixed_start = insert_dead_letter(&db, 11, &subject_of(start), &start.encode_to_vec()).await;
    let fixed_result =
        insert_dead_letter(&db, 12, &subject_of(result), &result.encode_to_vec()).await;
    // Still broken: not protobuf at all, and a run start on the variant-result subject.
    let garbage =
        insert_dead_letter(&db, 13, &subject_of(start), b"\x0a\xff\xffnot protobuf").await;
    let mismatch = insert_dead_letter(&db, 14, &subject_of(result), &start.encode_to_vec()).await;
    // And one refused by today's ingest itself (payload that is not JSON).
    let mut bad = run[0].clone();
    if let Some(telemetry_proto::v1::envelope::Body::Event(event)) = bad.body.as_mut() {
        event.payload_json = "{oops".into();
    }
    store
        .write(&batch_of("telemetry", &[bad], 15, 1_700_000_000_000))
        .await
        .unwrap();
    let today = store
        .monitor_dead_letters(None, 10)
        .await
        .unwrap()
        .into_iter()
        .find(|d| d.stream_seq == 15)
        .unwrap();
    let new_error = |raw: &[u8], subject: &str, seq: u64| match domain::parse(
        &subjects,
        subject,
        seq,
        raw.to_vec().into(),
    ) {
        Parsed::Dead(dead) => dead.reason.to_string(),
        Parsed::Fact(_) => panic!("expected {subject} #{seq} to fail today"),
    };

    // `list` and `show` through the binary.
    let env = [
        ("DATABASE_URL", db.url.as_str()),
        ("TELEMETRY_SUBJECT_PREFIX", "telemetry"),
    ];
    let (_, listed) = run_binary(&["dead-letters", "list"], &env);
    for id in [fixed_start, fixed_result, garbage, mismatch, today.id] {
        assert!(
            listed
                .lines()
                .any(|l| l.split_whitespace().next() == Some(&id.to_string())),
            "list shows {id}:\n{listed}"
        );
    }
    let (_, shown) = run_binary(&["dead-letters", "show", &garbage.to_string()], &env);
    assert!(shown.contains(OLD_REASON), "{shown}");
    assert!(shown.contains("0affff6e6f74"), "raw bytes in hex:\n{shown}");

    // Requeue one by id through the binary, then the rest through the library.
    let (_, out) = run_binary(&["dead-letters", "requeue", &fixed_start.to_string()], &env);
    assert!(
        out.contains("requeued 1 (1 new events stored); 0 still failing"),
        "{out}"
    );
    let report = dead_letters::requeue(store.as_ref(), &subjects, &Selection::All)
        .await
        .unwrap();
    assert_eq!(
        (report.requeued, report.stored, report.still_failing),
        (1, 1, 3)
    );

    let rows = all_rows(&db).await;
    let mut left: Vec<_> = rows
        .dead_letters
        .iter()
        .map(|d| (d.id, d.reason.clone()))
        .collect();
    left.sort();
    let mut expected = vec![
        (
            garbage,
            new_error(b"\x0a\xff\xffnot protobuf", &subject_of(start), 13),
        ),
        (
            mismatch,
            new_error(&start.encode_to_vec(), &subject_of(result), 14),
        ),
        (today.id, today.reason.clone()),
    ];
    expected.sort();
    assert_eq!(left, expected);
    assert!(left.iter().all(|(_, reason)| reason != OLD_REASON));

    // The fixed ones are ordinary rows now, with their stream position.
    let events: Vec<_> = rows
        .events
        .iter()
        .map(|e| (e.event_id.as_str(), e.stream_seq))
        .collect();
    assert_eq!(events.len(), 2);
    assert!(events.contains(&(start.event_id.as_str(), 11)));
    assert!(events.contains(&(result.event_id.as_str(), 12)));
    assert_eq!(rows.runs.len(), 1);
    let run_row = &rows.runs[0];
    assert_eq!(run_row.model.as_deref(), Some("gemini-2.5-flash-image"));
    assert_eq!(rows.variants.len(), 1);
    assert_eq!(rows.variants[0].status, "success");

    // Requeueing again changes nothing; purge empties the table.
    let again = dead_letters::requeue(store.as_ref(), &subjects, &Selection::All)
        .await
        .unwrap();
    assert_eq!((again.requeued, again.still_failing), (0, 3));
    let (_, purged) = run_binary(&["dead-letters", "purge", "--all"], &env);
    assert!(purged.contains("deleted 3 dead letters"), "{purged}");
    assert!(all_rows(&db).await.dead_letters.is_empty());
    assert_eq!(
        all_rows(&db).await.events.len(),
        2,
        "purge touches only dead letters"
    );
    store.close().await;
}
on_both_backends!(requeue_moves_what_parses_now_and_keeps_the_rest_with_its_new_error);
