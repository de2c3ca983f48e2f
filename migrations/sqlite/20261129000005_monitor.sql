-- Indexes of the monitor's queries (telemetry-collector/src/store/monitor_reads.rs).
-- Keep in step with migrations/postgres/.
-- Events of one shop, newest first, with the keyset's tie-breaker.
CREATE INDEX monitor_events_by_shop ON monitor_events (shop_id, occurred_at, event_id);
-- Events of one type, newest first: the first migration's type index lacked the id.
DROP INDEX monitor_events_by_type;
CREATE INDEX monitor_events_by_type ON monitor_events (event_type, occurred_at, event_id);
-- The overview: runs in a time window with the columns it groups by (covering), and
-- each run's variants with the columns it counts (covering), so neither reads table rows.
CREATE INDEX render_runs_overview ON render_runs (started_at, model, prompt_pack_version, run_id);
CREATE INDEX variant_results_overview ON variant_results (run_id, status, latency_ms);
