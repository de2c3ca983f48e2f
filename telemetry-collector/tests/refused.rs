//! The database refuses some envelopes for good (a data error, not an outage): each is
//! isolated from its batch into a dead letter carrying the database's message, the
//! rest is stored and everything is acked, readiness never drops, and requeueing the
//! refused ones leaves them dead letters instead of looping.
//!
//! The parse edge's validation catches what we know a database refuses; to reach the
//! database's own refusal, the test gives the table a rule of its own (a CHECK
//! constraint on Postgres, an aborting trigger on SQLite).

mod common;

use std::time::Duration;

use common::{
    http_get, jetstream, publish_all, run_envelopes, settings, spawn, subjects, wait_until,
    Backend, TestDb,
};
use telemetry_collector::dead_letters::{self, Selection};
use test_support::Isolation;

const REFUSED_SHOP: &str = "refused.myshopify.com";

/// Makes the database refuse every envelope of [`REFUSED_SHOP`].
async fn refuse_shop(db: &TestDb) {
    match db.backend {
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            sqlx::query(&format!(
                "ALTER TABLE monitor_events ADD CONSTRAINT refuse_shop \
                 CHECK (shop_id <> '{REFUSED_SHOP}') NOT VALID"
            ))
            .execute(&pool)
            .await
            .unwrap();
            pool.close().await;
        }
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
            sqlx::query(&format!(
                "CREATE TRIGGER refuse_shop BEFORE INSERT ON monitor_events \
                 WHEN NEW.shop_id = '{REFUSED_SHOP}' \
                 BEGIN SELECT RAISE(ABORT, 'refuse_shop: this shop is refused'); END"
            ))
            .execute(&pool)
            .await
            .unwrap();
            pool.close().await;
        }
    }
}

async fn envelopes_the_database_refuses_become_dead_letters_and_the_rest_is_stored(
    backend: Backend,
) {
    let iso = Isolation::new();
    let db = TestDb::new(backend).await;
    let reader = db.store().await;
    refuse_shop(&db).await;
    let js = jetstream(&iso).await;
    let collector = spawn(settings(&iso, &db.url)).await;
    let port = collector.port;

    // 20 runs; the request event of three of them comes from the refused shop.
    let refused_runs = [3, 9, 15];
    let mut envelopes = Vec::new();
    for run in 0..20 {
        let mut of_run = run_envelopes("renderer-r", run as u64 * 7, run);
        if refused_runs.contains(&run) {
            of_run[0].shop_id = REFUSED_SHOP.to_owned();
        }
        envelopes.extend(of_run);
    }
    publish_all(&js, &iso, &envelopes).await;
    let total = envelopes.len() as u64;
    let stored = total as i64 - refused_runs.len() as i64;

    let stream = js.get_stream(&iso.stream).await.unwrap();
    wait_until(Duration::from_secs(30), "every message acked", || async {
        let info = stream
            .consumer_info(telemetry_collector::config::DEFAULT_CONSUMER)
            .await
            .unwrap();
        info.ack_floor.stream_sequence == total && info.num_ack_pending == 0
    })
    .await;
    assert_eq!(reader.event_count().await.unwrap(), stored);
    let dead = reader.monitor_dead_letters(None, 100).await.unwrap();
    assert_eq!(dead.len(), refused_runs.len(), "{dead:?}");
    for letter in &dead {
        assert!(
            letter.reason.starts_with("the database refused it")
                && letter.reason.contains("refuse_shop"),
            "the reason carries the database's message: {}",
            letter.reason
        );
        assert!(!letter.raw.is_empty(), "the bytes are kept");
    }
    assert_eq!(
        collector.metrics.rejected_count(),
        refused_runs.len() as u64
    );
    assert_eq!(
        collector.metrics.db_errors(),
        0,
        "a refusal is not an outage"
    );
    assert_eq!(http_get(port, "/readyz").await.0, 200);
    let (_, metrics) = http_get(port, "/metrics").await;
    assert!(
        metrics.contains("collector_envelopes_rejected_total 3")
            && metrics.contains("collector_db_up 1"),
        "{metrics}"
    );
    collector.stop().await;

    // Requeue: they parse, the database refuses them again, and they stay dead
    // letters with its message — every time, without a loop.
    for _ in 0..2 {
        let report = dead_letters::requeue(&*reader, &subjects(&iso), &Selection::All)
            .await
            .unwrap();
        assert_eq!(report.requeued, 0, "{report:?}");
        assert_eq!(
            report.still_failing,
            refused_runs.len() as u64,
            "{report:?}"
        );
        let again = reader.monitor_dead_letters(None, 100).await.unwrap();
        assert_eq!(again.len(), refused_runs.len());
        assert!(again.iter().all(|d| d.reason.contains("refuse_shop")));
        assert_eq!(reader.event_count().await.unwrap(), stored);
    }
    reader.close().await;
}
on_both_backends!(envelopes_the_database_refuses_become_dead_letters_and_the_rest_is_stored);
