-- Time-series rollups (issue 15). Keep in step with migrations/sqlite/.
-- Counts of runs and variants per minute, hour and day (UTC) of their run's start, by model,
-- prompt pack, status and latency bucket: what the overview and its charts read instead
-- of every run of a long window. Kept by ingest in the batch's own transaction as the
-- difference between the touched runs' contributions before and after the batch
-- (telemetry-collector/src/store/rollups.rs), and by retention as it deletes runs, so
-- they always equal a recount of `render_runs` and `variant_results`. Existing rows are
-- counted at start-up (store::rollups), which this migration leaves to the store so that
-- one definition of the buckets exists.
--
-- kind: 0 a run (status = the run's status, latency = -1), 1 a variant (status = the
-- variant's, latency = the lower edge of its latency bucket, -1 without one).
-- model and prompt_pack: '' while the run's start has not arrived.
CREATE TABLE rollup_minutes (
    bucket      BIGINT NOT NULL,
    kind        SMALLINT NOT NULL,
    model       TEXT COLLATE "C" NOT NULL,
    prompt_pack TEXT COLLATE "C" NOT NULL,
    status      TEXT COLLATE "C" NOT NULL,
    latency     BIGINT NOT NULL,
    n           BIGINT NOT NULL,
    PRIMARY KEY (bucket, kind, model, prompt_pack, status, latency)
);
CREATE TABLE rollup_hours (
    bucket      BIGINT NOT NULL,
    kind        SMALLINT NOT NULL,
    model       TEXT COLLATE "C" NOT NULL,
    prompt_pack TEXT COLLATE "C" NOT NULL,
    status      TEXT COLLATE "C" NOT NULL,
    latency     BIGINT NOT NULL,
    n           BIGINT NOT NULL,
    PRIMARY KEY (bucket, kind, model, prompt_pack, status, latency)
);
CREATE TABLE rollup_days (
    bucket      BIGINT NOT NULL,
    kind        SMALLINT NOT NULL,
    model       TEXT COLLATE "C" NOT NULL,
    prompt_pack TEXT COLLATE "C" NOT NULL,
    status      TEXT COLLATE "C" NOT NULL,
    latency     BIGINT NOT NULL,
    n           BIGINT NOT NULL,
    PRIMARY KEY (bucket, kind, model, prompt_pack, status, latency)
);
-- Whether the rollups were counted from the existing rows (one row once done).
CREATE TABLE rollup_state (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    counted_at BIGINT NOT NULL
);
