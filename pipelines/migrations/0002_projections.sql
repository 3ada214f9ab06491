-- Projection state: which generation of its tables is live, whether it is stopped on an error,
-- and rebuilds in progress (resumable).

ALTER TABLE projection_positions
    ADD COLUMN generation     integer     NOT NULL DEFAULT 1,
    ADD COLUMN state          text        NOT NULL DEFAULT 'running',
    ADD COLUMN error          text,
    ADD COLUMN error_position bigint;

CREATE TABLE projection_rebuilds (
    name        text        PRIMARY KEY,
    generation  integer     NOT NULL,
    position    bigint      NOT NULL DEFAULT 0,
    target      bigint      NOT NULL,
    started_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
