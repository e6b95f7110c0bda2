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
    -- When a page was last settled, by whichever replica: the source's staleness.
    last_page_at timestamptz,
    PRIMARY KEY (source, run)
);

-- A record is dead-lettered once: an API page pulled again (a resumed page, an overlapping
-- window, a full refresh) or a broker message delivered again finds its row already there.
DELETE FROM rejected_events a USING rejected_events b
 WHERE a.id > b.id AND a.source = b.source AND a.subject = b.subject AND a.code = b.code
   AND md5(a.bytes) = md5(b.bytes);
CREATE UNIQUE INDEX rejected_events_once ON rejected_events (source, subject, code, md5(bytes));
