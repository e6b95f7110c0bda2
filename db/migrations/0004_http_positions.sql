-- Where each HTTP API source stands: one row per source and run (`schedule` for the pulls
-- `etl run` schedules, `backfill <from>..<to>` for an `etl pull`). `next` is the request for the
-- next page (a cursor, a link or a page number; NULL: the window's first page), written only once
-- every item of the pages before it is committed or dead-lettered, so a restart resumes there.
CREATE TABLE http_positions (
    source      text        NOT NULL,
    run         text        NOT NULL,
    window_from timestamptz NOT NULL,
    window_to   timestamptz NOT NULL,
    next        jsonb,
    pages       bigint      NOT NULL DEFAULT 0,
    items       bigint      NOT NULL DEFAULT 0,
    done        boolean     NOT NULL DEFAULT false,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (source, run)
);
