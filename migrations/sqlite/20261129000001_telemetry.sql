-- Telemetry store, SQLite dialect. Keep in step with migrations/postgres/.
-- Ids are UUIDv7 text (time-ordered), compared as text to pick the winning event.

CREATE TABLE render_runs (
    run_id               TEXT PRIMARY KEY NOT NULL,
    shop_id              TEXT NOT NULL,
    request_id           TEXT NOT NULL,
    -- From the RunStarted with the greatest event id (NULL until one arrives).
    product_asset_id     TEXT,
    room_session_id      TEXT,
    prompt_pack_version  TEXT,
    model                TEXT,
    product_image_hash   TEXT,
    product_image_width  INTEGER,
    product_image_height INTEGER,
    product_image_format TEXT,
    product_image_bytes  INTEGER,
    room_image_hash      TEXT,
    room_image_width     INTEGER,
    room_image_height    INTEGER,
    room_image_format    TEXT,
    room_image_bytes     INTEGER,
    resolved_facts_hash  TEXT,
    resolved_facts_json  TEXT,
    prompt_pack_hash     TEXT,
    prompt_pack_json     TEXT,
    variant_count        INTEGER,
    -- Start time (the completion's time until a start arrives): the list's sort key.
    started_at           INTEGER NOT NULL,
    started_event_id     TEXT,
    -- `running` until a RunCompleted arrives, then its status; never back to `running`.
    status               TEXT NOT NULL,
    total_duration_ms    INTEGER,
    success_count        INTEGER,
    fail_count           INTEGER,
    timeout_count        INTEGER,
    completed_at         INTEGER,
    completed_event_id   TEXT
);
CREATE INDEX render_runs_by_time ON render_runs (started_at, run_id);
CREATE INDEX render_runs_by_shop ON render_runs (shop_id, started_at, run_id);
CREATE INDEX render_runs_by_status ON render_runs (status, started_at, run_id);
CREATE INDEX render_runs_by_model ON render_runs (model, started_at, run_id);
CREATE INDEX render_runs_by_pack ON render_runs (prompt_pack_version, started_at, run_id);
CREATE INDEX render_runs_by_request ON render_runs (request_id);

CREATE TABLE variant_results (
    run_id            TEXT NOT NULL,
    variant_id        TEXT NOT NULL,
    shop_id           TEXT NOT NULL,
    request_id        TEXT NOT NULL,
    started_at        INTEGER,
    started_event_id  TEXT,
    -- `running` until a VariantResult arrives, then its status; never back to `running`.
    status            TEXT NOT NULL,
    final_prompt_hash TEXT,
    latency_ms        INTEGER,
    output_image_key  TEXT,
    output_image_hash TEXT,
    error_code        TEXT,
    error_message     TEXT,
    finished_at       INTEGER,
    result_event_id   TEXT,
    PRIMARY KEY (run_id, variant_id)
);

CREATE TABLE monitor_events (
    event_id     TEXT PRIMARY KEY NOT NULL,
    kind         TEXT NOT NULL,
    event_type   TEXT NOT NULL,
    source       TEXT,
    shop_id      TEXT NOT NULL,
    request_id   TEXT NOT NULL,
    run_id       TEXT,
    variant_id   TEXT,
    producer     TEXT NOT NULL,
    producer_seq INTEGER NOT NULL,
    occurred_at  INTEGER NOT NULL,
    received_at  INTEGER NOT NULL,
    stream_seq   INTEGER NOT NULL,
    subject      TEXT NOT NULL,
    payload      TEXT
);
CREATE INDEX monitor_events_by_request ON monitor_events (request_id, occurred_at);
CREATE INDEX monitor_events_by_run ON monitor_events (run_id, occurred_at);
CREATE INDEX monitor_events_by_time ON monitor_events (occurred_at, event_id);
CREATE INDEX monitor_events_by_type ON monitor_events (event_type, occurred_at);

CREATE TABLE dead_letters (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    stream      TEXT NOT NULL,
    stream_seq  INTEGER NOT NULL,
    subject     TEXT NOT NULL,
    reason      TEXT NOT NULL,
    raw         BLOB NOT NULL,
    received_at INTEGER NOT NULL,
    UNIQUE (stream, stream_seq)
);

CREATE TABLE producers (
    producer          TEXT PRIMARY KEY NOT NULL,
    -- From the ProducerStats with the greatest event id (NULL until one arrives).
    service           TEXT,
    emitted           INTEGER,
    published         INTEGER,
    dropped           INTEGER,
    dropped_by_reason TEXT,
    publish_failures  INTEGER,
    queue_depth       INTEGER,
    started_at        INTEGER,
    final             INTEGER,
    stats_event_id    TEXT,
    -- Latest occurred_at of anything stored from this producer.
    last_seen_at      INTEGER NOT NULL,
    -- Envelopes other than ProducerStats stored from this producer (new rows only).
    stored_events     INTEGER NOT NULL
);
