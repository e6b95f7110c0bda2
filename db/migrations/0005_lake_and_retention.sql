-- The lake and raw-zone retention (issue 21).
--
-- `ingested_at` becomes the time the row was written (clock_timestamp) rather than the start of
-- its transaction (now): the lake export takes a brief SHARE lock on `events`, which waits for
-- every transaction inserting into it, and then reads the clock. A row written after the lock
-- has a later clock, so "every row with ingested_at below the mark" is complete once the lock
-- was granted: no long transaction can commit an older ingested_at behind the export's back.
ALTER TABLE events ALTER COLUMN ingested_at SET DEFAULT clock_timestamp();
-- The export and the retention pass select the raw zone by ingestion time. Rows are appended in
-- that order, so a BRIN index (a summary per range of pages) finds them at almost no cost to
-- ingestion; a B-tree on ingested_at cost the drain ~20% in the bench.
CREATE INDEX events_ingested ON events USING brin (ingested_at);

-- Raw events deleted from the warehouse once they are in the lake: their ids only (no payload),
-- so an old file replayed or an old API window pulled again is still recognised as known and
-- adds no raw row (and no second copy in the lake). Kept for `retired_ids_days`.
CREATE TABLE retired_events (
    event_id   uuid        PRIMARY KEY,
    type       text        NOT NULL,
    entity_id  bigint      NOT NULL,
    event_at   timestamp   NOT NULL,
    retired_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX retired_events_entity ON retired_events (type, entity_id);
CREATE INDEX retired_events_retired_at ON retired_events (retired_at);

-- Where the raw zone's memory ends: retired ids older than `retired_ids_days` are forgotten,
-- and every forgotten id had an event_at at or before `forgotten_through`; an event that old is
-- refused (`beyond_horizon`) rather than risk loading a forgotten duplicate. One row.
CREATE TABLE raw_horizon (
    only_row          boolean     PRIMARY KEY DEFAULT true CHECK (only_row),
    forgotten_through timestamp,
    set_at            timestamptz NOT NULL DEFAULT now()
);
INSERT INTO raw_horizon (only_row) VALUES (true);
