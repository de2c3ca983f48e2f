-- The health strip counts the dead letters of the last 24 hours on every page load:
-- an index on the receive time keeps that a range read, however many there are.
CREATE INDEX dead_letters_by_time ON dead_letters (received_at);
