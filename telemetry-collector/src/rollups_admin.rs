//! `telemetry-collector rollups check | recount`: compares the time-series rollups with
//! a recount of the stored runs (`check`, which changes nothing; exit status 1 when they differ),
//! or replaces them with one (`recount`). Ingest keeps them exact on its own
//! ([`crate::store::rollups`]); what can make them differ is a writer that does not
//! keep them: a collector of a version from before them, still writing beside a new one
//! during a rolling upgrade, or rows changed by hand.

use std::fmt::Write as _;

use service_kit::ExposeSecret as _;

use crate::config::DatabaseArgs;
use crate::store::{self, StoreError};

/// Keys of a drift shown in `check`'s report (the count says how many there are).
pub const SHOWN_DRIFT: usize = 10;

/// `telemetry-collector rollups`.
#[derive(Debug, Clone, clap::Args)]
pub struct RollupsArgs {
    #[command(subcommand)]
    pub action: RollupsAction,
    /// Database.
    #[command(flatten)]
    pub database: DatabaseArgs,
}

/// What `rollups` does.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum RollupsAction {
    /// Compare the rollups with a recount of the stored runs; exit 1 when they differ.
    Check,
    /// Replace the rollups with a recount of the stored runs (one transaction; ingest's
    /// batches wait for it).
    Recount,
}

/// Runs the command, writing its report to `out`; `Ok(false)` when `check` found a
/// difference.
pub async fn run(args: &RollupsArgs, out: &mut String) -> Result<bool, StoreError> {
    let settings = args.database.settings();
    let store = store::connect(settings.database_url.expose_secret(), &settings.store).await?;
    store.migrate().await?;
    let result = match args.action {
        RollupsAction::Check => store.rollup_drift().await.map(|drift| {
            if drift.is_empty() {
                let _ = writeln!(out, "rollups agree with a recount of the stored runs");
                return true;
            }
            let _ = writeln!(
                out,
                "{} rollup rows differ from a recount of the stored runs; \
                 `telemetry-collector rollups recount` replaces them. First ones \
                 (table bucket, kind, model, prompt pack, status, latency: stored / recounted):",
                drift.len()
            );
            for (key, stored, recounted) in drift.iter().take(SHOWN_DRIFT) {
                let _ = writeln!(
                    out,
                    "  {} {} {:?} {:?} {} {}: {stored} / {recounted}",
                    key.bucket,
                    if key.kind == 0 { "run" } else { "variant" },
                    key.model,
                    key.prompt_pack,
                    key.status,
                    key.latency
                );
            }
            false
        }),
        RollupsAction::Recount => store.recount_rollups().await.map(|rows| {
            let _ = writeln!(out, "rollups recounted: {rows} rows");
            true
        }),
    };
    store.close().await;
    result
}
