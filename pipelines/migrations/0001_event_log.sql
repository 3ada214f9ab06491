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

-- Positions are handed out one append at a time, under a short advisory lock. Before taking
-- its positions, an append also takes a transaction-level shared advisory lock whose key
-- carries its first position, held until it commits or rolls back: readers find the lowest
-- position still in flight in pg_locks and read only below it (see readable_bound), so they
-- never see a position while a lower one can still appear.

CREATE FUNCTION in_flight_namespace() RETURNS bigint
LANGUAGE sql STABLE SET search_path FROM CURRENT AS $$
    SELECT ((hashtext(current_schema()) & 4194303) + 1)::bigint * 1099511627776
$$;

-- Appends events (and, for a command, its idempotency record) in the caller's transaction.
CREATE FUNCTION append_events(
    p_event_ids uuid[], p_aggregate_types text[], p_aggregate_ids text[], p_versions integer[],
    p_event_types text[], p_data jsonb[], p_metadata jsonb[],
    p_correlation_id text, p_causation_id text,
    p_command_id text, p_message_type text, p_result jsonb
) RETURNS bigint
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    n integer := coalesce(array_length(p_event_ids, 1), 0);
    assign_key bigint := hashtext(current_schema() || '.events');
    first_position bigint;
    last_position bigint;
BEGIN
    IF n > 0 THEN
        PERFORM pg_advisory_lock(assign_key);
        BEGIN
            SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END
              INTO first_position FROM events_position_seq;
            PERFORM pg_advisory_xact_lock_shared(in_flight_namespace() + first_position);
            PERFORM setval('events_position_seq', first_position + n - 1);
            INSERT INTO events (position, event_id, aggregate_type, aggregate_id, version,
                                event_type, data, metadata, correlation_id, causation_id)
            SELECT first_position + i - 1, p_event_ids[i], p_aggregate_types[i],
                   p_aggregate_ids[i], p_versions[i], p_event_types[i], p_data[i],
                   p_metadata[i], p_correlation_id, p_causation_id
            FROM generate_subscripts(p_event_ids, 1) AS i;
        EXCEPTION WHEN OTHERS THEN
            PERFORM pg_advisory_unlock(assign_key);
            RAISE;
        END;
        PERFORM pg_advisory_unlock(assign_key);
        last_position := first_position + n - 1;
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

-- Every position below the returned one is settled: committed, or rolled back for good.
-- Read the sequence first, then the in-flight appends, and the events in a later statement.
CREATE FUNCTION readable_bound() RETURNS bigint
LANGUAGE plpgsql VOLATILE SET search_path FROM CURRENT AS $$
DECLARE
    next_position bigint;
    lowest_in_flight bigint;
    ns bigint := in_flight_namespace();
BEGIN
    SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END
      INTO next_position FROM events_position_seq;
    SELECT min(((l.classid::bigint << 32) | l.objid::bigint) - ns) INTO lowest_in_flight
      FROM pg_locks l
     WHERE l.locktype = 'advisory' AND l.objsubid = 1 AND l.mode = 'ShareLock'
       AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
       AND ((l.classid::bigint << 32) | l.objid::bigint) - ns BETWEEN 1 AND 1099511627775;
    RETURN least(next_position, coalesce(lowest_in_flight, next_position));
END;
$$;
