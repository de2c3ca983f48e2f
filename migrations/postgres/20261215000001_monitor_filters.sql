-- The monitor's filters (issue 15, telemetry-collector/src/store/monitor_reads.rs).
-- Keep in step with migrations/sqlite/.
--
-- Shops and models are matched without regard to ASCII case: their indexes hold the
-- lowercase form instead of the stored one (lower() of a "C" column lowercases ASCII
-- only, as SQLite's does). A shop filter is a prefix; each shop it matches is one range
-- of this index. Replaced, not added: ingest maintains as many indexes as before.
DROP INDEX render_runs_by_shop;
CREATE INDEX render_runs_by_shop ON render_runs (lower(shop_id), started_at, run_id);
DROP INDEX render_runs_by_model;
CREATE INDEX render_runs_by_model ON render_runs (lower(model), started_at, run_id);
DROP INDEX monitor_events_by_shop;
CREATE INDEX monitor_events_by_shop ON monitor_events (lower(shop_id), occurred_at, producer, producer_seq, event_id);
-- Runs sorted by duration, longest first, and the duration filter: finished runs only
-- (a run has no duration before its completion), so a start adds no entry.
CREATE INDEX render_runs_by_duration ON render_runs (total_duration_ms, run_id)
    WHERE total_duration_ms IS NOT NULL;
-- Runs with a variant that failed with an error code: only failed and timed-out
-- variants have one (`unspecified` is the wire's "no error"), so the index is as
-- small as the failures. The runs query repeats this predicate so the index serves it.
CREATE INDEX variant_results_by_error ON variant_results (error_code, run_id)
    WHERE error_code IS NOT NULL AND error_code <> 'unspecified';
