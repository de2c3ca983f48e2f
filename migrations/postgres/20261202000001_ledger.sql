-- The loss ledger (issue 13). Keep in step with migrations/sqlite/.
-- The newest stats are those with the highest producer_seq (the contract), not the
-- greatest event id: stats_seq decides, the event id breaks a tie. Rows written before
-- this column have it NULL, so the next stats replace them.
ALTER TABLE producers ADD COLUMN stats_seq BIGINT;
-- When the winning stats were taken (producer's clock): how far they lag.
ALTER TABLE producers ADD COLUMN stats_at BIGINT;
-- When the collector last received anything from this producer (collector's clock):
-- a producer silent past COLLECTOR_PRODUCER_SILENT_AFTER without final stats is flagged.
ALTER TABLE producers ADD COLUMN last_received_at BIGINT NOT NULL DEFAULT 0;
UPDATE producers SET last_received_at = last_seen_at;
