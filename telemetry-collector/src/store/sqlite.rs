//! SQLite: one writer connection (SQLite serialises writers anyway; a second one would
//! only wait on the lock), a small pool of readers, WAL so readers never block the
//! writer, `synchronous=FULL` on the writer (a batch is acked after its commit, so the
//! commit must survive a power loss) and `NORMAL` on the readers (they never commit), a
//! busy timeout for locks held by other processes. Batches are multi-row `INSERT`s.

use std::str::FromStr;
use std::sync::Arc;

use super::{
    read_queries, Batch, DeadLetterRecord, ProducerRecord, RunDetail, RunRecord, Store, StoreError,
    StoreOptions, WriteReport,
};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

/// Page cache per connection, KiB (SQLite's default is 2 MiB). The writer touches the
/// right-hand leaves of eight b-trees per batch; with 2 MiB it re-read pages it had just
/// written. The cache grows only as pages are used.
const CACHE_KIB: u32 = 8 * 1024;
/// WAL pages before an automatic checkpoint (SQLite's default is 1,000, 4 MiB). A larger
/// WAL lets a page that several batches modify be copied into the database once.
const WAL_AUTOCHECKPOINT_PAGES: u32 = 16_000;

mod write;

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    statements: Arc<write::Statements>,
}

impl SqliteStore {
    /// Opens (creating if missing) the database file of `url`.
    pub async fn connect(url: &str, options: &StoreOptions) -> Result<Self, StoreError> {
        let connect = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(options.busy_timeout)
            .foreign_keys(false)
            .pragma("temp_store", "memory");
        // Only the writer gets the large cache and checkpoint interval: it is the one
        // that commits (and so checkpoints), and readers' caches would multiply RSS.
        // The writer commits what is then acked: `synchronous=FULL` makes each commit
        // durable (one fsync per batch), so a power loss cannot drop an acked batch.
        let writer_connect = connect
            .clone()
            .synchronous(if options.durable_commits {
                SqliteSynchronous::Full
            } else {
                SqliteSynchronous::Normal
            })
            .pragma("cache_size", format!("-{CACHE_KIB}"))
            .pragma("wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES.to_string());
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(writer_connect)
            .await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await?;
        Ok(Self {
            writer,
            reader,
            statements: Arc::new(write::Statements::new()),
        })
    }

    read_queries!();
    super::monitor_reads::monitor_read_queries!(sqlx::Sqlite, stats = packed);
    super::ops::ops_queries!(writer);
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    fn writers(&self) -> usize {
        1
    }

    fn dialect(&self) -> &'static str {
        "sqlite"
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::migrate!("../migrations/sqlite")
            .run(&self.writer)
            .await?;
        Ok(())
    }

    async fn write(&self, batch: &Batch) -> Result<WriteReport, StoreError> {
        write::write(&self.writer, &self.statements, batch).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    async fn run(&self, run_id: &str) -> Result<Option<RunDetail>, StoreError> {
        self.read_run(run_id).await
    }

    async fn producers(&self) -> Result<Vec<ProducerRecord>, StoreError> {
        self.read_producers().await
    }

    async fn event_count(&self) -> Result<i64, StoreError> {
        self.read_event_count().await
    }

    async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }

    // --- monitor reads ---
    async fn monitor_runs(&self, filter: &super::RunFilter) -> Result<Vec<RunRecord>, StoreError> {
        self.read_monitor_runs(filter).await
    }

    async fn monitor_events(
        &self,
        filter: &super::EventFilter,
    ) -> Result<Vec<super::EventRecord>, StoreError> {
        self.read_monitor_events(filter).await
    }

    async fn monitor_dead_letters(
        &self,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<DeadLetterRecord>, StoreError> {
        self.read_monitor_dead_letters(before, limit).await
    }

    async fn monitor_stats(&self, from: i64, to: i64) -> Result<super::Stats, StoreError> {
        self.read_monitor_stats(from, to).await
    }

    // --- operations ---
    async fn prune_counts(&self, cutoff: i64) -> Result<super::PruneCounts, StoreError> {
        self.ops_prune_counts(cutoff).await
    }

    async fn prune_step(&self, cutoff: i64, limit: i64) -> Result<super::PruneCounts, StoreError> {
        self.ops_prune_step(cutoff, limit).await
    }

    async fn dead_letter(&self, id: i64) -> Result<Option<DeadLetterRecord>, StoreError> {
        self.ops_dead_letter(id).await
    }

    async fn dead_letters_after(
        &self,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<DeadLetterRecord>, StoreError> {
        self.ops_dead_letters_after(after_id, limit).await
    }

    async fn settle_dead_letters(
        &self,
        resolved: &[i64],
        failing: &[(i64, String)],
    ) -> Result<(), StoreError> {
        self.ops_settle_dead_letters(resolved, failing).await
    }

    async fn purge_dead_letters(&self, limit: i64) -> Result<u64, StoreError> {
        self.ops_purge_dead_letters(limit).await
    }
}
