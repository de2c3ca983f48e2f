-- Telemetry store, Postgres dialect. Keep in step with migrations/sqlite/.
-- Ids are UUIDv7 text (time-ordered), compared as text to pick the winning event.
-- Every text column uses the "C" collation: byte order, the same as SQLite, and
-- much cheaper to index than a locale.

CREATE TABLE render_runs (
    run_id               TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    shop_id              TEXT COLLATE "C" NOT NULL,
    request_id           TEXT COLLATE "C" NOT NULL,
    -- From the RunStarted with the greatest event id (NULL until one arrives).
    product_asset_id     TEXT COLLATE "C",
    room_session_id      TEXT COLLATE "C",
    prompt_pack_version  TEXT COLLATE "C",
    model                TEXT COLLATE "C",
    product_image_hash   TEXT COLLATE "C",
    product_image_width  BIGINT,
    product_image_height BIGINT,
    product_image_format TEXT COLLATE "C",
    product_image_bytes  BIGINT,
    room_image_hash      TEXT COLLATE "C",
    room_image_width     BIGINT,
    room_image_height    BIGINT,
    room_image_format    TEXT COLLATE "C",
    room_image_bytes     BIGINT,
    resolved_facts_hash  TEXT COLLATE "C",
    resolved_facts_json  TEXT COLLATE "C",
    prompt_pack_hash     TEXT COLLATE "C",
    prompt_pack_json     TEXT COLLATE "C",
    variant_count        BIGINT,
    -- Start time (the completion's time until a start arrives): the list's sort key.
    started_at           BIGINT NOT NULL,
    started_event_id     TEXT COLLATE "C",
    -- `running` until a RunCompleted arrives, then its status; never back to `running`.
    status               TEXT COLLATE "C" NOT NULL,
    total_duration_ms    BIGINT,
    success_count        BIGINT,
    fail_count           BIGINT,
    timeout_count        BIGINT,
    completed_at         BIGINT,
    completed_event_id   TEXT COLLATE "C"
);
CREATE INDEX render_runs_by_time ON render_runs (started_at, run_id);
CREATE INDEX render_runs_by_shop ON render_runs (shop_id, started_at, run_id);
CREATE INDEX render_runs_by_status ON render_runs (status, started_at, run_id);
CREATE INDEX render_runs_by_model ON render_runs (model, started_at, run_id);
CREATE INDEX render_runs_by_pack ON render_runs (prompt_pack_version, started_at, run_id);
CREATE INDEX render_runs_by_request ON render_runs (request_id);

CREATE TABLE variant_results (
    run_id            TEXT COLLATE "C" NOT NULL,
    variant_id        TEXT COLLATE "C" NOT NULL,
    shop_id           TEXT COLLATE "C" NOT NULL,
    request_id        TEXT COLLATE "C" NOT NULL,
    started_at        BIGINT,
    started_event_id  TEXT COLLATE "C",
    -- `running` until a VariantResult arrives, then its status; never back to `running`.
    status            TEXT COLLATE "C" NOT NULL,
    final_prompt_hash TEXT COLLATE "C",
    latency_ms        BIGINT,
    output_image_key  TEXT COLLATE "C",
    output_image_hash TEXT COLLATE "C",
    error_code        TEXT COLLATE "C",
    error_message     TEXT COLLATE "C",
    finished_at       BIGINT,
    result_event_id   TEXT COLLATE "C",
    PRIMARY KEY (run_id, variant_id)
);

CREATE TABLE monitor_events (
    event_id     TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    kind         TEXT COLLATE "C" NOT NULL,
    event_type   TEXT COLLATE "C" NOT NULL,
    source       TEXT COLLATE "C",
    shop_id      TEXT COLLATE "C" NOT NULL,
    request_id   TEXT COLLATE "C" NOT NULL,
    run_id       TEXT COLLATE "C",
    variant_id   TEXT COLLATE "C",
    producer     TEXT COLLATE "C" NOT NULL,
    producer_seq BIGINT NOT NULL,
    occurred_at  BIGINT NOT NULL,
    received_at  BIGINT NOT NULL,
    stream_seq   BIGINT NOT NULL,
    subject      TEXT COLLATE "C" NOT NULL,
    payload      TEXT COLLATE "C"
);
CREATE INDEX monitor_events_by_request ON monitor_events (request_id, occurred_at);
CREATE INDEX monitor_events_by_run ON monitor_events (run_id, occurred_at);
CREATE INDEX monitor_events_by_time ON monitor_events (occurred_at, event_id);
CREATE INDEX monitor_events_by_type ON monitor_events (event_type, occurred_at);

CREATE TABLE dead_letters (
    id          BIGSERIAL PRIMARY KEY,
    stream      TEXT COLLATE "C" NOT NULL,
    stream_seq  BIGINT NOT NULL,
    subject     TEXT COLLATE "C" NOT NULL,
    reason      TEXT COLLATE "C" NOT NULL,
    raw         BYTEA NOT NULL,
    received_at BIGINT NOT NULL,
    UNIQUE (stream, stream_seq)
);

CREATE TABLE producers (
    producer          TEXT COLLATE "C" PRIMARY KEY NOT NULL,
    -- From the ProducerStats with the greatest event id (NULL until one arrives).
    service           TEXT COLLATE "C",
    emitted           BIGINT,
    published         BIGINT,
    dropped           BIGINT,
    dropped_by_reason TEXT COLLATE "C",
    publish_failures  BIGINT,
    queue_depth       BIGINT,
    started_at        BIGINT,
    final             BOOLEAN,
    stats_event_id    TEXT COLLATE "C",
    -- Latest occurred_at of anything stored from this producer.
    last_seen_at      BIGINT NOT NULL,
    -- Envelopes other than ProducerStats stored from this producer (new rows only).
    stored_events     BIGINT NOT NULL
);
