//! The database's disk fills up mid-stream, then is freed: ingest stalls with `/readyz`
//! naming "disk full", nothing is acked meanwhile, and once there is room again every
//! published event is stored exactly once, without a restart.
//!
//! Before the fix, SQLite lost data here for good: COMMIT failed with `SQLITE_FULL`,
//! SQLite rolled the transaction back by itself, sqlx kept its transaction depth, and
//! every later batch went into a SAVEPOINT that never committed while being acked.
//!
//! Also here: a SQLite file that was not writable when the collector opened it is
//! written once it is (the writer connection is reopened after a failure).

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{
    ack_floor, http_get, jetstream, publish_all, run_envelopes, settings, spawn, wait_for_events,
    wait_until, Backend, TestDb,
};
use telemetry_collector::store::Store;
use telemetry_proto::v1;
use test_support::tmpfs::Tmpfs;
use test_support::{Isolation, PgDatabase};

/// Room for the empty schema, the first runs and a few pages to spare.
const TMPFS_BYTES: u64 = 8 * 1024 * 1024;

fn runs(first: usize, count: usize) -> Vec<v1::Envelope> {
    (first..first + count)
        .flat_map(|run| run_envelopes("renderer-full", run as u64 * 7, run))
        .collect()
}

async fn a_full_disk_stalls_ingest_acks_nothing_and_loses_nothing(backend: Backend) {
    let iso = Isolation::new();
    // Declared before the database, so dropped after it (Postgres drops the
    // tablespace with the database, then the tmpfs goes).
    let disk = match backend {
        Backend::Sqlite => Tmpfs::mount(TMPFS_BYTES, None),
        Backend::Postgres => Tmpfs::mount(TMPFS_BYTES, Some("postgres")),
    };
    let db = match backend {
        Backend::Sqlite => TestDb {
            url: format!("sqlite://{}", disk.path().join("telemetry.db").display()),
            backend,
            pg: None,
            dir: None,
        },
        Backend::Postgres => {
            let pg = PgDatabase::create_in(disk.path()).await;
            TestDb {
                url: pg.url.clone(),
                backend,
                pg: Some(pg),
                dir: None,
            }
        }
    };
    let js = jetstream(&iso).await;
    let reader: Arc<dyn Store> = db.store().await;
    let mut s = settings(&iso, &db.url);
    s.store.busy_timeout = Duration::from_millis(200);
    s.store.acquire_timeout = Duration::from_secs(1);
    s.ack_wait = Duration::from_secs(3);
    let collector = spawn(s).await;
    let port = collector.port;

    let first = runs(0, 5);
    publish_all(&js, &iso, &first).await;
    wait_for_events(&reader, first.len() as i64).await;
    assert_eq!(http_get(port, "/readyz").await.0, 200);

    let filled = disk.fill();
    assert!(filled > 0, "the tmpfs had room to fill");
    // Enough rows that both dialects need new pages (Postgres fills partly used
    // pages first).
    let second = runs(5, 200);
    publish_all(&js, &iso, &second).await;
    wait_until(
        Duration::from_secs(30),
        "/readyz names the full disk",
        || async {
            let (status, body) = http_get(port, "/readyz").await;
            status == 503 && body.contains("disk full")
        },
    )
    .await;
    let (_, metrics) = http_get(port, "/metrics").await;
    assert!(
        metrics.contains("collector_db_up 0"),
        "/metrics agrees with /readyz: {metrics}"
    );
    // A batch may have fitted in the pages left free before the failing one: what
    // counts is that nothing is acked that is not stored, and that ingest stalls.
    let floor = ack_floor(&js, &iso).await;
    let stored = reader.event_count().await.unwrap();
    assert!(
        floor <= stored as u64,
        "acked up to {floor} with only {stored} stored"
    );
    assert!(stored < (first.len() + second.len()) as i64);
    // Retry for longer than the ack wait: in-progress acks keep the batch ours.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        ack_floor(&js, &iso).await,
        floor,
        "acked while the disk was full"
    );
    assert_eq!(
        reader.event_count().await.unwrap(),
        stored,
        "nothing of the failing batches is visible"
    );

    disk.free();
    let total = (first.len() + second.len()) as i64;
    wait_for_events(&reader, total).await;
    wait_until(Duration::from_secs(20), "/readyz ready again", || async {
        http_get(port, "/readyz").await.0 == 200
    })
    .await;
    assert_eq!(collector.metrics.events_stored(), total as u64);
    let producers = reader.producers().await.unwrap();
    assert_eq!(producers[0].stored_events, total, "each event counted once");
    let runs = reader
        .monitor_runs(&telemetry_collector::store::RunFilter {
            limit: 500,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(runs.len(), 205);
    let js_for_floor = js.clone();
    wait_until(Duration::from_secs(10), "everything acked", || async {
        ack_floor(&js_for_floor, &iso).await == total as u64
    })
    .await;
    collector.stop().await;
    reader.close().await;
}
on_both_backends!(a_full_disk_stalls_ingest_acks_nothing_and_loses_nothing);

/// `chattr +i` makes the file unwritable even for root; SQLite then opens it
/// read-only. Once the flag is gone, the next retry's fresh connection writes.
fn set_immutable(path: &std::path::Path, immutable: bool) {
    let flag = if immutable { "+i" } else { "-i" };
    let status = std::process::Command::new("chattr")
        .arg(flag)
        .arg(path)
        .status()
        .expect("run chattr (e2fsprogs)");
    assert!(
        status.success(),
        "chattr {flag} {} (needs root and a file system with attributes, such as ext4)",
        path.display()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_file_made_writable_again_is_written_without_a_restart() {
    let iso = Isolation::new();
    // In the build directory: the system temp dir may be a tmpfs, which has no
    // immutable flag.
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let path = dir.path().join("telemetry.db");
    let url = format!("sqlite://{}", path.display());
    let db = TestDb {
        url: url.clone(),
        backend: Backend::Sqlite,
        pg: None,
        dir: None,
    };
    // The schema exists, and this reader keeps the WAL files open meanwhile.
    let reader = db.store().await;
    let js = jetstream(&iso).await;
    set_immutable(&path, true);
    let guard = Immutable(path.clone());
    let mut s = settings(&iso, &url);
    s.store.busy_timeout = Duration::from_millis(200);
    let collector = spawn(s).await;
    let port = collector.port;

    let envelopes = runs(0, 3);
    publish_all(&js, &iso, &envelopes).await;
    wait_until(
        Duration::from_secs(30),
        "/readyz says the file is read-only",
        || async {
            let (status, body) = http_get(port, "/readyz").await;
            status == 503 && body.contains("read-only")
        },
    )
    .await;
    assert_eq!(reader.event_count().await.unwrap(), 0);

    drop(guard);
    wait_for_events(&reader, envelopes.len() as i64).await;
    wait_until(Duration::from_secs(20), "/readyz ready again", || async {
        http_get(port, "/readyz").await.0 == 200
    })
    .await;
    collector.stop().await;
    reader.close().await;
}

/// Clears the immutable flag on drop, so a failing test leaves a removable file.
struct Immutable(std::path::PathBuf);

impl Drop for Immutable {
    fn drop(&mut self) {
        set_immutable(&self.0, false);
    }
}
