//! Monitor read benchmark (prints figures; not a timed test).
//!
//! `cargo bench -p telemetry-collector --bench monitor` seeds `MONITOR_BENCH_RUNS`
//! (default 1,000,000) runs with 4 variants each and 6 events each (6,000,000 at the
//! default) into a fresh SQLite file and a fresh Postgres database, then times requests
//! through the collector's HTTP router (`oneshot`: query + rendering, no socket):
//!
//! - the first runs page (`/monitor`),
//! - filtered pages deep in the history (a shop; a status and a model), 90% of the way
//!   back,
//! - issue 15's filters: a shop and a model in another case, shop prefixes (11 and 111
//!   shops), sort by duration (all runs, the last 24 h), an error code, a duration
//!   filter,
//! - a run page (`/monitor/runs/{id}`, a different run each time),
//! - the overview with its charts over time over the last 15 minutes, 24 hours
//!   (`/monitor/overview?window=24h`), 7 and 30 days, and of one model,
//! - the error groups of the last 24 hours (`/monitor/errors?window=24h`), and one
//!   group's runs,
//! - the health strip (`/monitor/health`; the newest run starts at the bench's start).
//!
//! p50 and p95 over `MONITOR_BENCH_REPEAT` (default 40) requests each, after two warm-up
//! requests. Runs are 2.6 s apart (1,000,000 runs span 30 days; 24 h holds ~33,000
//! runs and ~133,000 variants), 200 shops, 3 models, 6 prompt packs, 85% complete,
//! 10% partial, 5% failed. A failed run's variants fail twice and time out twice, a
//! partial run's last variant times out (~10,000 errors a day), with messages holding
//! request ids, hashes and numbers as providers write them (about a dozen groups).
//!
//! Seeding generates rows inside the database (`INSERT .. SELECT` over a recursive CTE
//! on SQLite, `generate_series` on Postgres, 50,000 runs per statement) after the
//! collector's migrations, so every index the collector has is maintained; then
//! `ANALYZE` (and `VACUUM` on Postgres, for index-only scans), as an operator's
//! database would have. The seed leaves `error_group` empty and the rollups uncounted,
//! as on a database from before them: the store's start-up backfill fills both (timed
//! and printed).
//! Needs Postgres on 127.0.0.1:5432 (see `test-support`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use telemetry_collector::config::MonitorSettings;
use telemetry_collector::http::{router, AppState};
use telemetry_collector::metrics::Metrics;
use telemetry_collector::monitor::Monitor;
use telemetry_collector::store::normalise::normalise;
use telemetry_collector::store::{self, Store, StoreOptions};
use test_support::PgDatabase;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

/// Runs seeded unless `MONITOR_BENCH_RUNS` says otherwise.
const DEFAULT_RUNS: i64 = 1_000_000;
/// Requests timed per measurement unless `MONITOR_BENCH_REPEAT` says otherwise.
const DEFAULT_REPEAT: usize = 40;
/// Runs generated per `INSERT .. SELECT`.
const CHUNK: i64 = 50_000;
/// Time between two runs' starts (ms).
const SPACING_MS: i64 = 2_600;
/// Start of the oldest run (unix ms): set at the start so that the newest run starts
/// now, as on a live system (the health strip reads the last 15 minutes and 24 hours
/// before now; the other requests name their window).
static T0: std::sync::OnceLock<i64> = std::sync::OnceLock::new();

fn t0() -> i64 {
    *T0.get().expect("T0 is set before seeding")
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    bench().await;
}

/// How each dialect numbers rows `lo..hi` as `i`.
#[derive(Clone, Copy)]
enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    fn numbers(self, lo: i64, hi: i64) -> String {
        match self {
            Dialect::Sqlite => format!(
                "(WITH RECURSIVE seq(i) AS (SELECT {lo} UNION ALL SELECT i + 1 FROM seq WHERE i < {}) SELECT i FROM seq) AS n",
                hi - 1
            ),
            Dialect::Postgres => {
                format!("(SELECT i FROM generate_series({lo}::bigint, {}::bigint) AS i) AS n", hi - 1)
            }
        }
    }

    /// `expr` (an integer) in hex digits.
    fn hex(self, expr: &str) -> String {
        match self {
            Dialect::Sqlite => format!("printf('%x', {expr})"),
            Dialect::Postgres => format!("to_hex({expr})"),
        }
    }
}

const KS4: &str = "(SELECT 0 AS k UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3) AS ks";
const KS6: &str = "(SELECT 0 AS k UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 \
                   UNION ALL SELECT 4 UNION ALL SELECT 5) AS ks";

fn run_id(i: &str) -> String {
    format!("('run-' || ({i} + 1000000000))")
}
fn started_at(i: &str) -> String {
    format!("({} + {i} * {SPACING_MS})", t0())
}
fn shop(i: &str) -> String {
    format!("('shop-' || ({i} * 7919 % 200) || '.myshopify.com')")
}
const STATUS: &str =
    "(CASE WHEN n.i % 20 = 0 THEN 'failed' WHEN n.i % 10 = 1 THEN 'partial' ELSE 'complete' END)";
const MODEL: &str = "(CASE n.i % 3 WHEN 0 THEN 'gemini-2.5-flash-image' WHEN 1 THEN 'gemini-3-pro-image' ELSE 'local-composite' END)";

fn seed_statements(dialect: Dialect, lo: i64, hi: i64) -> [String; 3] {
    let n = dialect.numbers(lo, hi);
    let (rid, at, shop) = (run_id("n.i"), started_at("n.i"), shop("n.i"));
    let runs = format!(
        "INSERT INTO render_runs (run_id, shop_id, request_id, product_asset_id, room_session_id, \
         prompt_pack_version, model, product_image_hash, room_image_hash, resolved_facts_hash, \
         resolved_facts_json, prompt_pack_hash, prompt_pack_json, variant_count, started_at, \
         started_event_id, status, total_duration_ms, success_count, fail_count, timeout_count, \
         completed_at, completed_event_id) \
         SELECT {rid}, {shop}, 'req-' || n.i, 'asset-' || (n.i % 5000), 'room-' || n.i, \
         'pack-' || (n.i / 50000 % 6), {MODEL}, 'ph' || (n.i % 5000), 'rh' || n.i, 'fh', \
         '{{\"widthCm\":80}}', 'pk', '{{\"prompts\":[\"a\",\"b\",\"c\",\"d\"]}}', 4, {at}, \
         'e' || (n.i + 1000000000) || '-1', {STATUS}, 9000 + n.i % 12000, \
         CASE WHEN n.i % 20 = 0 THEN 0 WHEN n.i % 10 = 1 THEN 3 ELSE 4 END, \
         CASE WHEN n.i % 20 = 0 THEN 2 ELSE 0 END, \
         CASE WHEN n.i % 20 = 0 THEN 2 WHEN n.i % 10 = 1 THEN 1 ELSE 0 END, \
         {at} + 20000, 'e' || (n.i + 1000000000) || '-9' FROM {n}"
    );
    let variant_status =
        "(CASE WHEN n.i % 20 = 0 THEN (CASE WHEN ks.k < 2 THEN 'failed' ELSE 'timeout' END) \
         WHEN n.i % 10 = 1 AND ks.k = 3 THEN 'timeout' ELSE 'success' END)";
    // What providers and the renderer write: ids, hashes and numbers in the text.
    let request = dialect.hex("n.i * 2654435761 + ks.k");
    let error_code = format!(
        "CASE WHEN {variant_status} = 'success' THEN NULL \
         WHEN {variant_status} = 'timeout' THEN 'timeout' \
         WHEN n.i % 7 = 0 THEN 'storage_error' ELSE 'provider_error' END"
    );
    let error_message = format!(
        "CASE WHEN {variant_status} = 'success' THEN NULL \
         WHEN {variant_status} = 'timeout' THEN 'variant did not finish within 60000 ms' \
         WHEN n.i % 7 = 0 THEN 'storing renders/' || {rid} || '/v' || ks.k || \
         '.png failed: connection reset after ' || (n.i % 900) || ' ms' \
         WHEN n.i % 3 = 0 THEN 'provider returned HTTP 429: quota exceeded for project ' || (n.i % 97) \
         ELSE 'provider returned HTTP 503: model overloaded (request ' || {request} || \
         ', after ' || (n.i % 1000 + ks.k) || ' ms)' END"
    );
    let variants = format!(
        "INSERT INTO variant_results (run_id, variant_id, shop_id, request_id, started_at, \
         started_event_id, status, final_prompt_hash, latency_ms, output_image_key, \
         output_image_hash, error_code, error_message, finished_at, result_event_id) \
         SELECT {rid}, 'v' || ks.k, {shop}, 'req-' || n.i, {at} + 5, 'vs', {variant_status}, \
         'fp' || ks.k, 800 + (n.i * 2654435761 + ks.k * 40503) % 19000, \
         'renders/' || {rid} || '/v' || ks.k || '.png', 'oh', {error_code}, {error_message}, \
         {at} + 19000, 'vr' FROM {n} CROSS JOIN {KS4}"
    );
    let events = format!(
        "INSERT INTO monitor_events (event_id, kind, event_type, source, shop_id, request_id, \
         run_id, variant_id, producer, producer_seq, occurred_at, received_at, stream_seq, \
         subject, payload) \
         SELECT 'e' || (n.i + 1000000000) || '-' || ks.k, \
         CASE ks.k WHEN 0 THEN 'event' WHEN 1 THEN 'run_started' ELSE 'variant_result' END, \
         CASE ks.k WHEN 0 THEN 'sf_render_requested' WHEN 1 THEN 'run_started' ELSE 'variant_result' END, \
         CASE ks.k WHEN 0 THEN 'app_proxy' ELSE NULL END, {shop}, 'req-' || n.i, \
         CASE ks.k WHEN 0 THEN NULL ELSE {rid} END, \
         CASE WHEN ks.k >= 2 THEN 'v' || (ks.k - 2) ELSE NULL END, 'renderer-1', n.i * 6 + ks.k, \
         {at} + ks.k * 100, {at} + ks.k * 100 + 50, n.i * 6 + ks.k, \
         CASE ks.k WHEN 0 THEN 'telemetry.v1.event' WHEN 1 THEN 'telemetry.v1.run.started' ELSE 'telemetry.v1.variant.result' END, \
         CASE ks.k WHEN 0 THEN '{{\"productId\":\"p' || n.i || '\"}}' ELSE NULL END \
         FROM {n} CROSS JOIN {KS6}"
    );
    [runs, variants, events]
}

/// Marks the rollups as not counted yet (the seed wrote rows behind ingest's back), so
/// the store counts them at start-up as it would on a database from before them.
async fn uncount_rollups<'c, E>(conn: E)
where
    E: sqlx::Executor<'c>,
{
    conn.execute("DELETE FROM rollup_state")
        .await
        .expect("uncount the rollups");
}

async fn seed_sqlite(url: &str, runs: i64) {
    use sqlx::Connection as _;
    let mut conn = sqlx::SqliteConnection::connect(url)
        .await
        .expect("open sqlite");
    for pragma in [
        "PRAGMA journal_mode = WAL",
        "PRAGMA synchronous = OFF",
        "PRAGMA cache_size = -1000000",
    ] {
        sqlx::query(pragma).execute(&mut conn).await.unwrap();
    }
    let started = Instant::now();
    for (lo, hi) in chunks(runs) {
        for sql in seed_statements(Dialect::Sqlite, lo, hi) {
            sqlx::query(&sql)
                .execute(&mut conn)
                .await
                .expect("seed sqlite");
        }
        progress(hi, runs, started);
    }
    uncount_rollups(&mut conn).await;
    sqlx::query("ANALYZE").execute(&mut conn).await.unwrap();
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&mut conn)
        .await
        .unwrap();
}

async fn seed_postgres(url: &str, runs: i64) {
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .expect("open postgres");
    sqlx::query("SET synchronous_commit = off")
        .execute(&mut conn)
        .await
        .unwrap();
    let started = Instant::now();
    for (lo, hi) in chunks(runs) {
        for sql in seed_statements(Dialect::Postgres, lo, hi) {
            sqlx::query(&sql)
                .execute(&mut conn)
                .await
                .expect("seed postgres");
        }
        progress(hi, runs, started);
    }
    uncount_rollups(&mut conn).await;
    sqlx::query("VACUUM ANALYZE")
        .execute(&mut conn)
        .await
        .unwrap();
}

/// `(lo, hi)` ranges of [`CHUNK`] runs.
fn chunks(runs: i64) -> impl Iterator<Item = (i64, i64)> {
    (0..runs)
        .step_by(CHUNK as usize)
        .map(move |lo| (lo, (lo + CHUNK).min(runs)))
}

fn progress(done: i64, runs: i64, started: Instant) {
    eprint!(
        "\r  seeded {done} / {runs} runs ({:.0} s)",
        started.elapsed().as_secs_f64()
    );
    if done == runs {
        eprintln!();
    }
}

/// The path of the i-th timed request.
type PathOf = Box<dyn Fn(usize) -> String>;

struct Measurement {
    backend: &'static str,
    what: String,
    p50: Duration,
    p95: Duration,
    /// `None`: measured for the record, no target in the issue.
    target: Option<Duration>,
}

async fn time_requests(
    app: &axum::Router,
    repeat: usize,
    path: impl Fn(usize) -> String,
) -> (Duration, Duration) {
    let mut samples = Vec::with_capacity(repeat);
    for i in 0..repeat + 2 {
        let request = Request::get(path(i)).body(Body::empty()).unwrap();
        let started = Instant::now();
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 64 * 1024 * 1024)
            .await
            .unwrap();
        let elapsed = started.elapsed();
        assert!(
            status.is_success(),
            "{}: {status} {}",
            path(i),
            String::from_utf8_lossy(&body)
        );
        if i >= 2 {
            samples.push(elapsed);
        }
    }
    samples.sort();
    let at =
        |q: f64| samples[((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len()) - 1];
    (at(0.50), at(0.95))
}

async fn measure(
    backend: &'static str,
    store: Arc<dyn Store>,
    runs: i64,
    repeat: usize,
) -> Vec<Measurement> {
    let app = router(AppState {
        store,
        metrics: Arc::new(Metrics::default()),
        nats: None,
        max_body_bytes: 64 * 1024,
        monitor: Monitor::new(&MonitorSettings::default(), CancellationToken::new()),
    });
    let deep = runs / 10; // 90% of the way back from the newest
    let cursor = format!(
        "{}%3Arun-{}",
        t0() + deep * SPACING_MS,
        deep + 1_000_000_000
    );
    let end = t0() + runs * SPACING_MS;
    let ms = Duration::from_millis;
    let mut out = Vec::new();
    let cases: Vec<(String, Option<Duration>, PathOf)> = vec![
        (
            "first runs page (/monitor)".into(),
            Some(ms(50)),
            Box::new(|_| "/monitor".to_owned()),
        ),
        (
            "shop filter, 90% deep".into(),
            Some(ms(50)),
            Box::new(move |i| {
                format!(
                    "/monitor?shop=shop-{}.myshopify.com&cursor={cursor}",
                    i % 200
                )
            }),
        ),
        (
            "status + model filter, 90% deep".into(),
            Some(ms(50)),
            Box::new({
                let cursor = format!(
                    "{}%3Arun-{}",
                    t0() + deep * SPACING_MS,
                    deep + 1_000_000_000
                );
                move |_| format!("/monitor?status=failed&model=local-composite&cursor={cursor}")
            }),
        ),
        // Issue 15's filters: a shop in another case and by prefix, a model in another
        // case, sort by duration, an error code (5% of runs, all their failures), a
        // quick range.
        (
            "shop in another case, 90% deep".into(),
            Some(ms(50)),
            Box::new({
                let cursor = format!(
                    "{}%3Arun-{}",
                    t0() + deep * SPACING_MS,
                    deep + 1_000_000_000
                );
                move |i| {
                    format!(
                        "/monitor?shop=SHOP-{}.MyShopify.com&cursor={cursor}",
                        i % 200
                    )
                }
            }),
        ),
        (
            "shop prefix of 11 shops (shop-1X), first page".into(),
            Some(ms(50)),
            Box::new(|i| format!("/monitor?shop=Shop-1{}", i % 10)),
        ),
        (
            "shop prefix of 111 shops (shop-1), first page".into(),
            Some(ms(50)),
            Box::new(|_| "/monitor?shop=shop-1".to_owned()),
        ),
        (
            "model in another case + status, first page".into(),
            Some(ms(50)),
            Box::new(|_| "/monitor?model=Local-Composite&status=FAILED".to_owned()),
        ),
        (
            "sort by duration, first page".into(),
            Some(ms(50)),
            Box::new(|_| "/monitor?sort=duration".to_owned()),
        ),
        (
            "sort by duration, last 24 h".into(),
            Some(ms(50)),
            Box::new(move |_| format!("/monitor?sort=duration&range=24h&to={end}")),
        ),
        (
            "error code, first page".into(),
            Some(ms(50)),
            Box::new(|_| "/monitor?error_code=provider_error".to_owned()),
        ),
        (
            "duration filter 20.5 s and up, first page".into(),
            Some(ms(50)),
            Box::new(|_| "/monitor?min_duration_ms=20500".to_owned()),
        ),
        (
            "run page (/monitor/runs/{id})".into(),
            Some(ms(50)),
            Box::new(move |i| {
                format!(
                    "/monitor/runs/run-{}",
                    1_000_000_000 + (i as i64 * 7_919_993) % runs
                )
            }),
        ),
        (
            "overview, last 15 min".into(),
            Some(ms(200)),
            Box::new(move |_| format!("/monitor/overview?window=15m&to={end}")),
        ),
        (
            "overview, last 24 h".into(),
            Some(ms(200)),
            Box::new(move |_| format!("/monitor/overview?window=24h&to={end}")),
        ),
        (
            "overview, last 24 h, one model".into(),
            Some(ms(200)),
            Box::new(move |_| {
                format!("/monitor/overview?window=24h&to={end}&model=gemini-3-pro-image")
            }),
        ),
        (
            "error groups, last 24 h (/monitor/errors)".into(),
            Some(ms(200)),
            Box::new(move |_| format!("/monitor/errors?window=24h&to={end}")),
        ),
        (
            "one error group's runs, last 24 h".into(),
            Some(ms(200)),
            Box::new(move |_| group_runs_path(end)),
        ),
        // The longer windows an operator can pick (7 d ≈ 230,000 runs here, 30 d ≈
        // all of them): whole hours come from the hourly rollups.
        (
            "overview, last 7 d".into(),
            Some(ms(200)),
            Box::new(move |_| format!("/monitor/overview?window=7d&to={end}")),
        ),
        (
            "overview, last 30 d".into(),
            Some(ms(200)),
            Box::new(move |_| format!("/monitor/overview?window=30d&to={end}")),
        ),
        (
            "overview, last 30 d, one model".into(),
            Some(ms(200)),
            Box::new(move |_| {
                format!("/monitor/overview?window=30d&to={end}&model=gemini-3-pro-image")
            }),
        ),
        (
            "error groups, last 7 d".into(),
            None,
            Box::new(move |_| format!("/monitor/errors?window=7d&to={end}")),
        ),
        // Every page loads it; its 24-hour failure rate is the overview's query, read
        // at most once a minute (the warm-up requests read it), so this is what the
        // other requests of that minute cost.
        (
            "health strip (/monitor/health)".into(),
            Some(ms(20)),
            Box::new(|_| "/monitor/health".to_owned()),
        ),
    ];
    check_error_groups(&app, end).await;
    for (what, target, path) in cases {
        let (p50, p95) = time_requests(&app, repeat, path).await;
        eprintln!("  {backend}: {what}: p50 {p50:?} p95 {p95:?}");
        out.push(Measurement {
            backend,
            what,
            p50,
            p95,
            target,
        });
    }
    out
}

/// One error group's runs over the last 24 h: the provider outage of one model.
fn group_runs_path(end: i64) -> String {
    let group = normalise(
        "provider returned HTTP 503: model overloaded (request 1f2e3d4c5b6a, after 12 ms)",
    );
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("window", "24h")
        .append_pair("to", &end.to_string())
        .append_pair("model", "gemini-3-pro-image")
        .append_pair("error_code", "provider_error")
        .append_pair("error_group", &group)
        .finish();
    format!("/monitor/errors?{query}")
}

/// The error groups of the seeded day are filled and grouped: a handful of groups,
/// none without its normalised message, and the group the bench opens among them.
async fn check_error_groups(app: &axum::Router, end: i64) {
    let request = Request::get(format!("/api/v1/error-groups?window=24h&to={end}"))
        .body(Body::empty())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let body = axum::body::to_bytes(response.into_body(), 64 * 1024 * 1024)
        .await
        .unwrap();
    let groups: serde_json::Value = serde_json::from_slice(&body).expect("error groups JSON");
    let list = groups["groups"].as_array().expect("groups");
    assert!(
        groups["total"].as_i64().unwrap_or(0) > 0 && list.len() < 50,
        "{groups}"
    );
    assert!(
        list.iter().all(|g| g["error_group"].is_string()),
        "{groups}"
    );
    eprintln!(
        "  error groups of the last 24 h: {} groups of {} failed and timed-out variants",
        list.len(),
        groups["total"]
    );
    let request = Request::get(group_runs_path(end))
        .body(Body::empty())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let body = axum::body::to_bytes(response.into_body(), 64 * 1024 * 1024)
        .await
        .unwrap();
    let page = String::from_utf8_lossy(&body);
    assert!(
        page.matches("href=\"/monitor/runs/").count() >= 10,
        "the group's runs are listed: {page}"
    );
}

/// Opens the store and migrates it: the start-up backfill fills the error groups of
/// the seeded variants. Returns the store and how long the migration took.
async fn open_and_backfill(url: &str, options: &StoreOptions) -> (Arc<dyn Store>, Duration) {
    let store = store::connect(url, options).await.expect("open the store");
    let started = Instant::now();
    store.migrate().await.expect("migrate (backfill)");
    (store, started.elapsed())
}

async fn bench() {
    let runs: i64 = env_or("MONITOR_BENCH_RUNS", DEFAULT_RUNS);
    let repeat: usize = env_or("MONITOR_BENCH_REPEAT", DEFAULT_REPEAT);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_millis() as i64;
    T0.set(now - runs * SPACING_MS).expect("set once");
    let mut results = Vec::new();

    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("monitor-bench.db").display());
    let options = StoreOptions::default();
    {
        let store = store::connect(&url, &options)
            .await
            .expect("open sqlite store");
        store.migrate().await.expect("migrate sqlite");
        store.close().await;
    }
    eprintln!(
        "SQLite: seeding {runs} runs, {} variants, {} events",
        runs * 4,
        runs * 6
    );
    let started = Instant::now();
    seed_sqlite(&url, runs).await;
    let sqlite_seed = started.elapsed();
    let (store, sqlite_backfill) = open_and_backfill(&url, &options).await;
    eprintln!("SQLite: error groups backfilled and rollups counted in {sqlite_backfill:?}");
    results.extend(measure("SQLite", store.clone(), runs, repeat).await);
    store.close().await;

    let pg = PgDatabase::create().await;
    {
        let store = store::connect(&pg.url, &options)
            .await
            .expect("open postgres store");
        store.migrate().await.expect("migrate postgres");
        store.close().await;
    }
    eprintln!(
        "Postgres: seeding {runs} runs, {} variants, {} events",
        runs * 4,
        runs * 6
    );
    let started = Instant::now();
    seed_postgres(&pg.url, runs).await;
    let pg_seed = started.elapsed();
    let (store, pg_backfill) = open_and_backfill(&pg.url, &options).await;
    eprintln!("Postgres: error groups backfilled and rollups counted in {pg_backfill:?}");
    results.extend(measure("Postgres", store.clone(), runs, repeat).await);
    store.close().await;

    println!();
    println!(
        "{runs} runs, {} variants, {} events; {repeat} requests each through the router; seeding took {:.0} s (SQLite) and {:.0} s (Postgres)",
        runs * 4,
        runs * 6,
        sqlite_seed.as_secs_f64(),
        pg_seed.as_secs_f64()
    );
    let errors = runs / 20 * 4 + runs / 10;
    println!(
        "Start-up backfill of the error groups of ~{errors} failed and timed-out variants \
         and count of the rollups of every run: {:.1} s (SQLite), {:.1} s (Postgres)",
        sqlite_backfill.as_secs_f64(),
        pg_backfill.as_secs_f64()
    );
    println!();
    println!("| backend | request | p50 ms | p95 ms | target p95 | met |");
    println!("| --- | --- | ---: | ---: | ---: | --- |");
    for m in &results {
        println!(
            "| {} | {} | {:.1} | {:.1} | {} | {} |",
            m.backend,
            m.what,
            m.p50.as_secs_f64() * 1e3,
            m.p95.as_secs_f64() * 1e3,
            m.target
                .map_or("none".to_owned(), |t| format!("< {} ms", t.as_millis())),
            match m.target {
                Some(target) if m.p95 < target => "yes",
                Some(_) => "no",
                None => "",
            }
        );
    }
}
