-- Process-manager runs (flows/) and the journal of their steps.

CREATE TABLE flow_runs (
    id              text        PRIMARY KEY,  -- '{flow}:{key}'
    flow            text        NOT NULL,
    key             text        NOT NULL,
    -- running | compensating | completed | compensated | failed
    status          text        NOT NULL DEFAULT 'running',
    input           jsonb       NOT NULL,     -- the event that started it
    reason          text,                     -- why it failed
    correlation_id  text,
    causation_id    text,                     -- the id of the event that started it
    wake_at         timestamptz,              -- due to be driven from then; NULL once finished
    lease_owner     text,                     -- the process driving it, until lease_until
    lease_until     timestamptz,
    errors          integer     NOT NULL DEFAULT 0,  -- drives that ended in an unexpected error
    last_error      text,
    started_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz
);
CREATE INDEX flow_runs_due ON flow_runs (wake_at) WHERE wake_at IS NOT NULL;
CREATE INDEX flow_runs_started ON flow_runs (started_at DESC);
CREATE INDEX flow_runs_key ON flow_runs (key);

CREATE TABLE flow_steps (
    seq             bigserial   UNIQUE,       -- the order steps were first begun in
    run_id          text        NOT NULL REFERENCES flow_runs (id) ON DELETE CASCADE,
    phase           text        NOT NULL,     -- do | undo | failure
    step            text        NOT NULL,
    service         text        NOT NULL,
    queue           text        NOT NULL,
    message_type    text        NOT NULL,
    message         jsonb       NOT NULL,
    message_id      text        NOT NULL,     -- the idempotency key, the same for every attempt
    undo            jsonb,                    -- what undoes it: {service, queue, messageType, body}
    status          text        NOT NULL DEFAULT 'pending',  -- pending | done | refused | expired
    result          jsonb,
    reason          text,
    deadline_at     timestamptz,
    attempts        integer     NOT NULL DEFAULT 0,
    last_error      text,
    begun_at        timestamptz NOT NULL DEFAULT now(),
    answered_at     timestamptz,
    PRIMARY KEY (run_id, phase, step)
);
