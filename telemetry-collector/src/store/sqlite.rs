//! SQLite: one writer connection (SQLite serialises writers anyway; a second one would
//! only wait on the lock), a small pool of readers, WAL so readers never block the
//! writer, `synchronous=FULL` on the writer (a batch is acked after its commit, so the
//! commit must survive a power loss) and `NORMAL` on the readers (they never commit), a
//! busy timeout for locks held by other processes. Batches are multi-row `INSERT`s.

use std::str::FromStr;
use std::sync::Arc;

use super::{
    error_groups, overview, Batch, Dialect, ErrorFilter, ErrorGroups, ErrorSample,
    ErrorSampleFilter, OverviewFilter, StaleCutoff, StatsRow, StoreError, StoreOptions,
    WriteReport,
};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::Sqlite;

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
            statements: Arc::new(write::Statements::new(options.rollups)),
        })
    }
}

#[async_trait::async_trait]
impl Dialect for SqliteStore {
    type Db = Sqlite;
    const NAME: &'static str = "sqlite";

    fn reader(&self) -> &SqlitePool {
        &self.reader
    }

    fn operator(&self) -> &SqlitePool {
        &self.writer
    }

    fn writers(&self) -> usize {
        1
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

    async fn close(&self) {
        self.writer.close().await;
        self.reader.close().await;
    }

    async fn overview_rows(
        &self,
        filter: &OverviewFilter,
        stale: StaleCutoff,
    ) -> Result<Vec<StatsRow>, StoreError> {
        overview::sqlite(&self.reader, filter, stale).await
    }

    async fn error_groups(&self, filter: &ErrorFilter) -> Result<ErrorGroups, StoreError> {
        error_groups::sqlite(&self.reader, filter).await
    }

    async fn error_samples(
        &self,
        filter: &ErrorSampleFilter,
    ) -> Result<Vec<ErrorSample>, StoreError> {
        error_groups::samples_sqlite(&self.reader, filter).await
    }

    async fn backfill_error_groups(&self) -> Result<u64, StoreError> {
        error_groups::backfill_sqlite(&self.writer).await
    }

    async fn prune_runs(
        &self,
        conn: &mut sqlx::SqliteConnection,
        cutoff: i64,
        limit: i64,
    ) -> Result<(u64, u64), StoreError> {
        write::prune_runs(conn, &self.statements, cutoff, limit).await
    }

    async fn lock_rollups(&self, _conn: &mut sqlx::SqliteConnection) -> Result<(), StoreError> {
        // The operator pool is the single writer: no batch can commit meanwhile.
        Ok(())
    }
}
