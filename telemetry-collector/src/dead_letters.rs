//! `telemetry-collector dead-letters list | show ID | requeue (--all | ID..) | purge
//! (--all | ID..)`: look at what the parse edge refused, and retry it after a fix.
//!
//! Requeue runs the decoder of THIS build ([`crate::domain::parse`]) on the stored raw
//! bytes and subject. What parses now is written with the ingest path's one-transaction
//! batch write ([`Store::write`]: idempotent, order-free), and only after that commit are
//! those dead letters removed, in a second transaction that also stores the new error
//! of the ones that still fail. That is ingest's commit-then-ack: a crash between the two
//! leaves the dead letter, and requeueing it again changes nothing in the tables.

use bytes::Bytes;
use service_kit::now_ms;
use service_kit::ExposeSecret as _;
use telemetry_proto::subjects::DEFAULT_PREFIX;
use telemetry_proto::Subjects;

use crate::config::DatabaseArgs;
use crate::domain::{self, Parsed, Rejection};
use crate::store::{self, Batch, DeadLetterRecord, Store, StoreError};

/// Dead letters read and requeued (one write) at a time.
pub const DEFAULT_PAGE: i64 = 500;
/// Dead letters `list` prints unless told otherwise.
pub const DEFAULT_LIST_LIMIT: i64 = 100;
/// Raw bytes `show` prints as hex; the rest is counted, not printed.
pub const MAX_SHOW_BYTES: usize = 4_096;

/// Why a dead-letter command failed.
#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    /// The database failed.
    #[error("DATABASE_URL: {0}")]
    Store(#[from] StoreError),
    /// No dead letter has this id.
    #[error("no dead letter with id {0}")]
    NotFound(i64),
    /// The subject prefix is not valid.
    #[error("invalid setting TELEMETRY_SUBJECT_PREFIX: {0}")]
    Prefix(String),
}

/// Which dead letters a command acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selection {
    /// Every one.
    All,
    /// These ids.
    Ids(Vec<i64>),
}

/// What a requeue did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequeueReport {
    /// Dead letters that parse now: written as events and removed.
    pub requeued: u64,
    /// Envelopes stored for the first time by the requeue.
    pub stored: u64,
    /// Dead letters that still fail; their reason now is this build's error.
    pub still_failing: u64,
}

/// Re-parses the selected dead letters with this build's decoder; see the module doc.
pub async fn requeue(
    store: &dyn Store,
    subjects: &Subjects,
    selection: &Selection,
) -> Result<RequeueReport, DeadLetterError> {
    let mut report = RequeueReport::default();
    match selection {
        Selection::All => {
            let mut after = 0;
            loop {
                let page = store.dead_letters_after(after, DEFAULT_PAGE).await?;
                let Some(last) = page.last() else { break };
                after = last.id;
                requeue_page(store, subjects, &page, &mut report).await?;
            }
        }
        Selection::Ids(ids) => {
            let mut rows = Vec::with_capacity(ids.len());
            for id in ids {
                rows.push(
                    store
                        .dead_letter(*id)
                        .await?
                        .ok_or(DeadLetterError::NotFound(*id))?,
                );
            }
            for page in rows.chunks(DEFAULT_PAGE as usize) {
                requeue_page(store, subjects, page, &mut report).await?;
            }
        }
    }
    Ok(report)
}

async fn requeue_page(
    store: &dyn Store,
    subjects: &Subjects,
    page: &[DeadLetterRecord],
    report: &mut RequeueReport,
) -> Result<(), DeadLetterError> {
    let mut batch = Batch {
        stream: page.first().map(|d| d.stream.clone()).unwrap_or_default(),
        received_at: now_ms(),
        facts: Vec::new(),
        dead: Vec::new(),
    };
    let mut resolved = Vec::new();
    let mut failing = Vec::new();
    for dead in page {
        let seq = u64::try_from(dead.stream_seq).unwrap_or(0);
        match domain::parse(subjects, &dead.subject, seq, Bytes::from(dead.raw.clone())) {
            Parsed::Fact(fact) => {
                batch.facts.push(*fact);
                resolved.push(dead.id);
            }
            Parsed::Dead(still) => failing.push((dead.id, still.reason.to_string())),
        }
    }
    if !batch.facts.is_empty() {
        // The database may refuse what now parses: those stay dead letters with its
        // message (isolated like ingest does), instead of failing every requeue.
        let written = store::write_isolating(store, &batch).await?;
        report.stored += written.report.stored;
        // Refused by the projection (an event id that names another stored envelope, a
        // clock far ahead): they stay dead letters, with the reason of this build.
        for (origin, reason) in &written.report.refused {
            let at = batch
                .facts
                .iter()
                .position(|f| f.origin == *origin)
                .expect("a refused envelope is one of the batch's");
            batch.facts.swap_remove(at);
            failing.push((resolved.swap_remove(at), reason.clone()));
        }
        for (origin, reason) in written.rejected {
            let at = batch
                .facts
                .iter()
                .position(|f| f.origin == origin)
                .expect("a rejected envelope is one of the batch's");
            batch.facts.swap_remove(at);
            failing.push((
                resolved.swap_remove(at),
                Rejection::Database(reason).to_string(),
            ));
        }
    }
    store.settle_dead_letters(&resolved, &failing).await?;
    report.requeued += resolved.len() as u64;
    report.still_failing += failing.len() as u64;
    Ok(())
}

/// Deletes the selected dead letters; returns how many.
pub async fn purge(store: &dyn Store, selection: &Selection) -> Result<u64, DeadLetterError> {
    match selection {
        Selection::All => {
            let mut total = 0;
            loop {
                let deleted = store.purge_dead_letters(DEFAULT_PAGE).await?;
                total += deleted;
                if deleted == 0 {
                    return Ok(total);
                }
            }
        }
        Selection::Ids(ids) => {
            let mut found = Vec::with_capacity(ids.len());
            for id in ids {
                if store.dead_letter(*id).await?.is_some() {
                    found.push(*id);
                }
            }
            store.settle_dead_letters(&found, &[]).await?;
            Ok(found.len() as u64)
        }
    }
}

/// `telemetry-collector dead-letters`.
#[derive(Debug, Clone, clap::Args)]
pub struct DeadLetterArgs {
    /// Database.
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// Subject prefix the decoder checks subjects against.
    #[arg(long = "subject-prefix", env = "TELEMETRY_SUBJECT_PREFIX", default_value = DEFAULT_PREFIX)]
    pub subject_prefix: String,
    /// What to do.
    #[command(subcommand)]
    pub action: DeadLetterAction,
}

/// Dead-letter actions.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum DeadLetterAction {
    /// One line per dead letter, oldest first.
    List {
        /// Most lines printed.
        #[arg(long, default_value_t = DEFAULT_LIST_LIMIT)]
        limit: i64,
        /// Start after this id (the last one of the previous page).
        #[arg(long, default_value_t = 0)]
        after: i64,
    },
    /// One dead letter with its raw bytes in hex.
    Show {
        /// Its id.
        id: i64,
    },
    /// Re-run this build's decoder; move what parses now into the tables.
    Requeue(Select),
    /// Delete dead letters.
    Purge(Select),
}

/// `--all` or ids.
#[derive(Debug, Clone, clap::Args)]
pub struct Select {
    /// Every dead letter.
    #[arg(long, conflicts_with = "ids", required_unless_present = "ids")]
    pub all: bool,
    /// These ids.
    pub ids: Vec<i64>,
}

impl Select {
    fn selection(&self) -> Selection {
        if self.all {
            Selection::All
        } else {
            Selection::Ids(self.ids.clone())
        }
    }
}

/// Runs a `dead-letters` command, printing to stdout.
pub async fn run(args: &DeadLetterArgs) -> Result<(), DeadLetterError> {
    let subjects = Subjects::new(&args.subject_prefix)
        .map_err(|err| DeadLetterError::Prefix(err.to_string()))?;
    let settings = args.database.settings();
    let store = store::connect(settings.database_url.expose_secret(), &settings.store).await?;
    store.migrate().await?;
    let result = act(store.as_ref(), &subjects, &args.action).await;
    store.close().await;
    result
}

async fn act(
    store: &dyn Store,
    subjects: &Subjects,
    action: &DeadLetterAction,
) -> Result<(), DeadLetterError> {
    match action {
        DeadLetterAction::List { limit, after } => {
            let rows = store.dead_letters_after(*after, (*limit).max(1)).await?;
            println!(
                "{:>8}  {:>10}  {:>15}  {:<40}  reason",
                "id", "stream_seq", "received_at", "subject"
            );
            for dead in &rows {
                println!(
                    "{:>8}  {:>10}  {:>15}  {:<40}  {}",
                    dead.id, dead.stream_seq, dead.received_at, dead.subject, dead.reason
                );
            }
            if rows.len() as i64 == *limit {
                if let Some(last) = rows.last() {
                    println!("(more: --after {})", last.id);
                }
            }
        }
        DeadLetterAction::Show { id } => {
            let dead = store
                .dead_letter(*id)
                .await?
                .ok_or(DeadLetterError::NotFound(*id))?;
            println!("id:          {}", dead.id);
            println!(
                "stream:      {} (sequence {})",
                dead.stream, dead.stream_seq
            );
            println!("subject:     {}", dead.subject);
            println!("received_at: {} (unix ms)", dead.received_at);
            println!("reason:      {}", dead.reason);
            println!("raw:         {} bytes", dead.raw.len());
            for line in dead.raw[..dead.raw.len().min(MAX_SHOW_BYTES)].chunks(32) {
                let hex: String = line.iter().map(|b| format!("{b:02x}")).collect();
                println!("  {hex}");
            }
            if dead.raw.len() > MAX_SHOW_BYTES {
                println!("  ... {} more bytes", dead.raw.len() - MAX_SHOW_BYTES);
            }
        }
        DeadLetterAction::Requeue(select) => {
            let report = requeue(store, subjects, &select.selection()).await?;
            println!(
                "requeued {} ({} new events stored); {} still failing (reason updated)",
                report.requeued, report.stored, report.still_failing
            );
        }
        DeadLetterAction::Purge(select) => {
            let deleted = purge(store, &select.selection()).await?;
            println!("deleted {deleted} dead letters");
        }
    }
    Ok(())
}
