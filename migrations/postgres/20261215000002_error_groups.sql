-- Error groups (issue 15). Keep in step with migrations/sqlite/.
-- A failed or timed-out variant's error message with ids, hashes and numbers replaced by
-- placeholders (telemetry-collector/src/store/normalise.rs): what the error groups
-- page groups by, beside the model and the error code. Filled by the projection from
-- the winning result, like the message; rows stored before this column are filled at
-- start-up (store::error_groups::backfill), which this migration cannot do in SQL.
ALTER TABLE variant_results ADD COLUMN error_group TEXT COLLATE "C";
-- The error groups of a window: each run's failed and timed-out variants with the
-- columns they are grouped and dated by (covering). Partial: successes, most rows,
-- cost nothing here, neither at ingest nor in size.
CREATE INDEX variant_results_errors ON variant_results (run_id, status, error_code, error_group, finished_at)
    WHERE status IN ('failed', 'timeout');
-- What the start-up backfill still has to fill: empty once it ran, and new rows never
-- enter it (the projection fills the column), so the check at each start is free.
CREATE INDEX variant_results_ungrouped ON variant_results (run_id, variant_id)
    WHERE status IN ('failed', 'timeout') AND error_group IS NULL;
