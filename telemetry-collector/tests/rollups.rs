//! The time-series rollups equal a full recount of the stored runs and variants
//! (issue 15, item 2), on SQLite and on a fresh Postgres database, after adversarial
//! input:
//! - envelopes shuffled and cut into batches of random sizes;
//! - duplicates inside a batch and across batches, and a replay of everything;
//! - a second, later run start with another model and a start time in another minute
//!   (it wins: the run moves bucket), two results for one variant, completions without
//!   a start, variants whose run never starts, runs that never complete;
//! - start times on minute and hour edges, and before the earliest bucket (a wild
//!   clock: the bucket arithmetic must not overflow);
//! - retention pruning runs half-way, while later batches re-create some of them;
//! - on Postgres, two batches written at once (as its two ingest writers do).
//!
//! Each property runs several seeds; a failure prints the seed and the first keys
//! that differ.

mod common;
mod monitor_support;

use std::sync::Arc;

use common::{batch_of, Backend, TestDb};
use monitor_support::RunSpec;
use telemetry_collector::store::rollups::{Grain, EARLIEST, HOUR_MS, MINUTE_MS};
use telemetry_collector::store::{Batch, Store};
use telemetry_proto::v1::{self, envelope::Body};

/// A small deterministic generator (xorshift64*), so a failing seed can be rerun.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

/// An hour-aligned start for the seeded runs (2023-11-14 22:00 UTC).
const T0: i64 = 1_699_999_200_000;

/// The envelopes of `runs` adversarial runs.
fn adversarial_envelopes(rng: &mut Rng, runs: usize) -> Vec<v1::Envelope> {
    let statuses = ["success", "success", "failed", "timeout", "running"];
    let mut out = Vec::new();
    for n in 0..runs {
        // Anywhere in three hours, often right on a minute or hour edge.
        let started_at = match rng.below(20) {
            // A producer's clock gone wild: before the earliest bucket.
            0 => EARLIEST - 1_000_000_000 - rng.below(1_000_000) as i64,
            1..=5 => T0 + rng.below(3) as i64 * HOUR_MS + rng.below(2) as i64 * 2 - 1,
            6..=10 => T0 + rng.below(180) as i64 * MINUTE_MS - rng.below(2) as i64,
            _ => T0 + rng.below(3 * HOUR_MS as u64) as i64,
        };
        let mut run = RunSpec::new(n, started_at);
        run.model = ["gemini-2.5-flash-image", "local-composite", "Mixed-Case"]
            [rng.below(3) as usize]
            .to_owned();
        for variant in &mut run.variants {
            variant.status = statuses[rng.below(5) as usize];
            // From under 10 ms to minutes, across bucket edges.
            variant.latency_ms = [3, 10, 99, 100, 999, 1_000, 1_234, 8_200, 59_999, 600_000]
                [rng.below(10) as usize]
                + rng.below(3);
        }
        run.completed = rng.chance(80);
        let mut envelopes = run.envelopes();
        // A later start with another model, in another minute: it wins.
        if rng.chance(25) {
            if let Some(start) = envelopes
                .iter()
                .find(|e| matches!(e.body, Some(Body::RunStarted(_))))
                .cloned()
            {
                let mut again = start;
                again.event_id = uuid::Uuid::now_v7().to_string();
                again.occurred_at = started_at + 90_000;
                if let Some(Body::RunStarted(body)) = &mut again.body {
                    body.model = "second-start".into();
                    body.prompt_pack_version = "pack-moved".into();
                }
                envelopes.push(again);
            }
        }
        // A second result for a variant, with another status and latency.
        if rng.chance(25) {
            if let Some(result) = envelopes
                .iter()
                .find(|e| matches!(e.body, Some(Body::VariantResult(_))))
                .cloned()
            {
                let mut again = result;
                again.event_id = uuid::Uuid::now_v7().to_string();
                if let Some(Body::VariantResult(body)) = &mut again.body {
                    body.status = if body.status == v1::VariantStatus::Success as i32 {
                        v1::VariantStatus::Failed as i32
                    } else {
                        v1::VariantStatus::Success as i32
                    };
                    body.latency_ms = 4_700 + rng.below(100);
                }
                envelopes.push(again);
            }
        }
        // The start never arrives: a completion-only run, or variants without a run.
        if rng.chance(15) {
            envelopes.retain(|e| !matches!(e.body, Some(Body::RunStarted(_))));
        }
        out.extend(envelopes);
    }
    out
}

/// The envelopes shuffled, with duplicates, cut into batches of 1 to 40.
fn batches(rng: &mut Rng, envelopes: &[v1::Envelope]) -> Vec<Batch> {
    let mut sent: Vec<v1::Envelope> = envelopes.to_vec();
    for envelope in envelopes {
        if rng.chance(20) {
            sent.push(envelope.clone());
        }
    }
    rng.shuffle(&mut sent);
    let now = service_kit::clock::now_ms();
    let mut out = Vec::new();
    let mut rest = sent.as_slice();
    let mut seq = 1;
    while !rest.is_empty() {
        let take = (1 + rng.below(40) as usize).min(rest.len());
        let (chunk, tail) = rest.split_at(take);
        out.push(batch_of("telemetry", chunk, seq, now));
        seq += take as u64;
        rest = tail;
    }
    out
}

/// Writes `batches`, two at a time when `pairs` (Postgres has two writers).
async fn write_all(store: &Arc<dyn Store>, batches: &[Batch], pairs: bool) {
    if pairs {
        for two in batches.chunks(2) {
            let (a, b) = (&two[0], two.get(1));
            let second = async {
                if let Some(b) = b {
                    store.write(b).await.expect("write");
                }
            };
            let (first, ()) = tokio::join!(store.write(a), second);
            first.expect("write");
        }
    } else {
        for batch in batches {
            store.write(batch).await.expect("write");
        }
    }
}

async fn assert_no_drift(store: &Arc<dyn Store>, seed: u64, when: &str) {
    let drift = store.rollup_drift().await.expect("compare the rollups");
    assert!(
        drift.is_empty(),
        "seed {seed}, {when}: {} rollup rows differ from a recount, e.g. {:?}",
        drift.len(),
        &drift[..drift.len().min(5)]
    );
}

/// The rows of a grain's rollup (without zeros), for comparing two databases.
async fn rollup_rows(
    db: &TestDb,
    grain: Grain,
) -> Vec<(i64, i64, String, String, String, i64, i64)> {
    let sql = format!(
        "SELECT bucket, CAST(kind AS BIGINT), model, prompt_pack, status, latency, n FROM {} \
         WHERE n <> 0 ORDER BY 1, 2, 3, 4, 5, 6",
        grain.table()
    );
    match db.backend {
        Backend::Sqlite => {
            let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
            sqlx::query_as(&sql).fetch_all(&pool).await.unwrap()
        }
        Backend::Postgres => {
            let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
            sqlx::query_as(&sql).fetch_all(&pool).await.unwrap()
        }
    }
}

async fn rollups_equal_a_recount_after_adversarial_input(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let pairs = backend == Backend::Postgres;
    for seed in [1_u64, 7, 42, 1_234, 99_991] {
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        let envelopes = adversarial_envelopes(&mut rng, 60);
        let batches = batches(&mut rng, &envelopes);
        let half = batches.len() / 2;
        write_all(&store, &batches[..half], pairs).await;
        assert_no_drift(&store, seed, "after half the batches").await;

        // Retention in small steps at a cutoff inside the window, with later batches
        // (some of them for pruned runs) written at the same time.
        let cutoff = T0 + rng.below(3 * HOUR_MS as u64) as i64;
        let prune = async {
            for _ in 0..3 {
                store.prune_step(cutoff, 7).await.expect("prune");
            }
        };
        // And the check itself while all that runs: it compares one moment, so it
        // finds no drift that is not there.
        let check = async {
            for _ in 0..3 {
                assert_no_drift(&store, seed, "while writing and pruning").await;
            }
        };
        tokio::join!(prune, write_all(&store, &batches[half..], pairs), check);
        assert_no_drift(&store, seed, "after pruning while writing").await;

        // A replay of everything, in another order.
        let mut replay = batches.clone();
        rng.shuffle(&mut replay);
        write_all(&store, &replay, pairs).await;
        assert_no_drift(&store, seed, "after the replay").await;
    }
    // Not vacuous: the rollups hold what was written.
    let hours = rollup_rows(&db, Grain::Hour).await;
    assert!(
        hours
            .iter()
            .any(|r| r.1 == 1 && r.4 == "success" && r.6 > 0),
        "the hourly rollup holds successful variants: {hours:?}"
    );
    assert!(hours.iter().any(|r| r.2 == "second-start"));
}

#[tokio::test]
async fn rollups_equal_a_recount_after_adversarial_input_sqlite() {
    rollups_equal_a_recount_after_adversarial_input(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollups_equal_a_recount_after_adversarial_input_postgres() {
    rollups_equal_a_recount_after_adversarial_input(Backend::Postgres).await;
}

/// One set of envelopes in two orders and batchings, with duplicates, gives the same
/// rollup rows: the rollups are order-free, not only consistent with their own rows.
async fn any_order_gives_the_same_rollups(backend: Backend) {
    let mut rng = Rng(0xDEAD_BEEF);
    let envelopes = adversarial_envelopes(&mut rng, 80);
    let mut rows = Vec::new();
    for _ in 0..2 {
        let db = TestDb::new(backend).await;
        let store = db.store().await;
        let batches = batches(&mut rng, &envelopes);
        write_all(&store, &batches, backend == Backend::Postgres).await;
        rows.push((
            rollup_rows(&db, Grain::Minute).await,
            rollup_rows(&db, Grain::Hour).await,
            rollup_rows(&db, Grain::Day).await,
        ));
        store.close().await;
    }
    assert!(!rows[0].0.is_empty());
    for (grain, a, b) in [
        ("minute", &rows[0].0, &rows[1].0),
        ("hour", &rows[0].1, &rows[1].1),
        ("day", &rows[0].2, &rows[1].2),
    ] {
        let only_a: Vec<_> = a.iter().filter(|r| !b.contains(r)).take(5).collect();
        let only_b: Vec<_> = b.iter().filter(|r| !a.contains(r)).take(5).collect();
        assert!(
            only_a.is_empty() && only_b.is_empty(),
            "two orders, two {grain} rollups: first order only {only_a:?}, second only {only_b:?}"
        );
    }
}

#[tokio::test]
async fn any_order_gives_the_same_rollups_sqlite() {
    any_order_gives_the_same_rollups(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_order_gives_the_same_rollups_postgres() {
    any_order_gives_the_same_rollups(Backend::Postgres).await;
}

/// A database whose rows predate the rollups (the migration leaves them empty) is
/// counted at start-up, once.
#[tokio::test]
async fn rows_stored_before_the_rollups_are_counted_at_start_up() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let db = TestDb::new(backend).await;
        let store = db.store().await;
        let mut rng = Rng(5);
        let envelopes = adversarial_envelopes(&mut rng, 20);
        write_all(&store, &batches(&mut rng, &envelopes), false).await;
        let before = rollup_rows(&db, Grain::Minute).await;
        // As on a database of the previous version: no rollups, not counted yet.
        let wipe = "DELETE FROM rollup_minutes; DELETE FROM rollup_hours; \
                    DELETE FROM rollup_days; DELETE FROM rollup_state";
        match backend {
            Backend::Sqlite => {
                let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
                sqlx::raw_sql(wipe).execute(&pool).await.unwrap();
            }
            Backend::Postgres => {
                let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
                sqlx::raw_sql(wipe).execute(&pool).await.unwrap();
            }
        }
        assert!(rollup_rows(&db, Grain::Minute).await.is_empty());
        let again = db.store().await;
        assert_eq!(rollup_rows(&db, Grain::Minute).await, before, "{backend:?}");
        assert!(again.rollup_drift().await.unwrap().is_empty());
    }
}

/// `telemetry-collector rollups check` says whether the rollups agree with a recount
/// (exit 1 and the first keys when not); `rollups recount` replaces them: what an
/// operator runs after an older collector wrote beside a new one.
#[tokio::test]
async fn the_rollups_command_checks_and_recounts() {
    let db = TestDb::new(Backend::Sqlite).await;
    let store = db.store().await;
    let mut rng = Rng(11);
    let envelopes = adversarial_envelopes(&mut rng, 10);
    write_all(&store, &batches(&mut rng, &envelopes), false).await;
    store.close().await;
    let env = [("DATABASE_URL", db.url.as_str())];

    let (_, out) = common::run_binary(&["rollups", "check"], &env);
    assert!(out.contains("rollups agree with a recount"), "{out}");

    // As an older collector would leave them: a run it wrote is not counted.
    let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
    sqlx::query("UPDATE rollup_hours SET n = n - 1 WHERE kind = 0")
        .execute(&pool)
        .await
        .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_telemetry-collector"))
        .args(["rollups", "check"])
        .envs(env)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run the telemetry-collector binary");
    let out = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{out}");
    assert!(out.contains("rollup rows differ from a recount"), "{out}");
    assert!(out.contains(" run "), "the keys are shown: {out}");

    let (_, out) = common::run_binary(&["rollups", "recount"], &env);
    assert!(out.contains("rollups recounted: "), "{out}");
    let (_, out) = common::run_binary(&["rollups", "check"], &env);
    assert!(out.contains("rollups agree with a recount"), "{out}");
}
