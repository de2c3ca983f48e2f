-- The events lists' order (issue 13): time, then producer, then the producer's
-- sequence, then the event id (the keyset's tie-breaker). Events made in one
-- millisecond used to sort by their random UUIDv7 bits. Keep in step with
-- migrations/postgres/ and monitor_reads::EVENT_ORDER.
DROP INDEX monitor_events_by_time;
CREATE INDEX monitor_events_by_time ON monitor_events (occurred_at, producer, producer_seq, event_id);
DROP INDEX monitor_events_by_shop;
CREATE INDEX monitor_events_by_shop ON monitor_events (shop_id, occurred_at, producer, producer_seq, event_id);
DROP INDEX monitor_events_by_type;
CREATE INDEX monitor_events_by_type ON monitor_events (event_type, occurred_at, producer, producer_seq, event_id);
