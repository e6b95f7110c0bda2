-- The dead-letter place of the broker source: a message that cannot be loaded (invalid, or
-- refused by the database for its own rows) leaves the stream only once it is here, with its
-- bytes exactly as received and its reason, for an operator to list and replay after a fix
-- (`etl dead-letters list|replay`). The inbox source keeps its own in failed/.
CREATE TABLE rejected_events (
    id          bigserial   PRIMARY KEY,
    source      text        NOT NULL,
    origin      text        NOT NULL,
    subject     text        NOT NULL,
    type        text,
    event_id    text,
    code        text        NOT NULL,
    reason      jsonb       NOT NULL,
    bytes       bytea       NOT NULL,
    rejected_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX rejected_events_code ON rejected_events (code);
