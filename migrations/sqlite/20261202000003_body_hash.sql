-- One event id names one envelope (issue 13): the first 16 bytes of the SHA-256 of
-- each stored envelope's bytes, so an envelope that reuses a stored event id with other
-- bytes is told from a redelivery and refused as a dead letter, whether or not the two
-- shared a batch (store::projection). NULL on rows stored before: taken as the same.
ALTER TABLE monitor_events ADD COLUMN body_hash BLOB;
