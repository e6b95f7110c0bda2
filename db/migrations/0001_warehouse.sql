-- The warehouse: a raw zone (`events`) and the current state of each entity (`users`, `cards`).
--
-- Timestamps from the producers are naive local times with one-second resolution, so they are
-- stored as `timestamp` (without time zone). No foreign keys: events arrive in any order and a
-- card may name a user that never exists.

-- Raw zone: every accepted event once, for lineage and dedupe (event_id is the idempotency key).
CREATE TABLE events (
    event_id    uuid        PRIMARY KEY,
    type        text        NOT NULL CHECK (type IN ('user', 'card')),
    entity_id   bigint      NOT NULL,
    event_at    timestamp   NOT NULL,
    payload     jsonb       NOT NULL,
    source_file text        NOT NULL,
    ingested_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_entity ON events (type, entity_id);

-- Latest version of each user. (event_at, event_id) is the version guard: a row only changes
-- when an event with a greater pair arrives, so the table is a function of the set of events.
CREATE TABLE users (
    id       bigint           PRIMARY KEY,
    name     text             NOT NULL,
    address  text             NOT NULL,
    job      text             NOT NULL,
    score    double precision NOT NULL,
    event_at timestamp        NOT NULL,
    event_id uuid             NOT NULL
);

-- Latest version of each card. The guard is (updated_at, event_at, event_id): updated_at first
-- because it is the producer's own version clock; the others break its one-second ties.
CREATE TABLE cards (
    id              bigint    PRIMARY KEY,
    user_id         bigint,
    created_by_name text      NOT NULL,
    created_at      timestamp NOT NULL,
    updated_at      timestamp NOT NULL,
    active          boolean   NOT NULL,
    event_at        timestamp NOT NULL,
    event_id        uuid      NOT NULL
);
CREATE INDEX cards_user_id ON cards (user_id);
