-- The append-only event log, snapshots, checkpoints and idempotency records.

CREATE TABLE events (
    position        bigint      PRIMARY KEY,
    event_id        uuid        NOT NULL UNIQUE,
    aggregate_type  text        NOT NULL,
    aggregate_id    text        NOT NULL,
    version         integer     NOT NULL CHECK (version > 0),
    event_type      text        NOT NULL,
    data            jsonb       NOT NULL,
    metadata        jsonb       NOT NULL DEFAULT '{}',
    occurred_at     timestamptz NOT NULL DEFAULT now(),
    correlation_id  text,
    causation_id    text,
    transaction_id  xid8        NOT NULL DEFAULT pg_current_xact_id(),
    CONSTRAINT events_aggregate_version UNIQUE (aggregate_type, aggregate_id, version)
);
CREATE SEQUENCE events_position_seq OWNED BY events.position;
CREATE INDEX events_type_position ON events (event_type, position);
CREATE INDEX events_correlation ON events (correlation_id);

CREATE TABLE snapshots (
    aggregate_type  text        NOT NULL,
    aggregate_id    text        NOT NULL,
    version         integer     NOT NULL,
    state           jsonb       NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (aggregate_type, aggregate_id)
);

CREATE TABLE projection_positions (
    name            text        PRIMARY KEY,
    position        bigint      NOT NULL DEFAULT 0,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE relay_positions (
    name            text        PRIMARY KEY,
    position        bigint      NOT NULL DEFAULT 0,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE command_results (
    command_id      text        PRIMARY KEY,
    message_type    text        NOT NULL,
    result          jsonb,
    position        bigint,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE processed_events (
    subscriber      text        NOT NULL,
    event_id        uuid        NOT NULL,
    processed_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (subscriber, event_id)
);

-- Appends events (and, for a command, its idempotency record) in the caller's transaction.
--
-- Positions are taken under a short advisory lock that also covers the moment the transaction
-- gets its id, so position order equals transaction-id order. Readers then only read rows whose
-- transaction is older than every transaction still running (see read_all): they never see a
-- position while a lower one can still appear.
CREATE FUNCTION append_events(
    p_event_ids uuid[], p_aggregate_types text[], p_aggregate_ids text[], p_versions integer[],
    p_event_types text[], p_data jsonb[], p_metadata jsonb[],
    p_correlation_id text, p_causation_id text,
    p_command_id text, p_message_type text, p_result jsonb
) RETURNS bigint
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    n integer := coalesce(array_length(p_event_ids, 1), 0);
    lock_key bigint := hashtext(current_schema() || '.events');
    first_position bigint;
    last_position bigint;
BEGIN
    IF n > 0 THEN
        IF pg_current_xact_id_if_assigned() IS NOT NULL THEN
            RAISE EXCEPTION 'events must be the first write of their transaction'
                USING ERRCODE = 'BNY02';
        END IF;
        PERFORM pg_advisory_lock(lock_key);
        BEGIN
            first_position := nextval('events_position_seq');
            IF n > 1 THEN
                PERFORM setval('events_position_seq', first_position + n - 1);
            END IF;
            INSERT INTO events (position, event_id, aggregate_type, aggregate_id, version,
                                event_type, data, metadata, correlation_id, causation_id)
            SELECT first_position + i - 1, p_event_ids[i], p_aggregate_types[i],
                   p_aggregate_ids[i], p_versions[i], p_event_types[i], p_data[i],
                   p_metadata[i], p_correlation_id, p_causation_id
            FROM generate_subscripts(p_event_ids, 1) AS i;
        EXCEPTION WHEN OTHERS THEN
            PERFORM pg_advisory_unlock(lock_key);
            RAISE;
        END;
        PERFORM pg_advisory_unlock(lock_key);
        last_position := first_position + n - 1;
        PERFORM pg_notify(current_schema() || '.events', last_position::text);
    END IF;
    IF p_command_id IS NOT NULL THEN
        INSERT INTO command_results (command_id, message_type, result, position)
        VALUES (p_command_id, p_message_type, p_result, last_position)
        ON CONFLICT DO NOTHING;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'command % was already handled', p_command_id USING ERRCODE = 'BNY01';
        END IF;
    END IF;
    RETURN last_position;
END;
$$;
