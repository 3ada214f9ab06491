-- Appends take their positions from the sequence itself (nextval), without a lock of their own.
--
-- Readers stay gap-free: before its first nextval, an append takes its shared in-flight lock
-- keyed by the next position not yet handed out when it starts. Every position it then gets
-- is at or above that key, so a reader (readable_bound: the sequence first, then pg_locks)
-- that sees one of them handed out also sees the lock, and stops at or below the key. Several
-- appends may share a key; a key lower than the append's first position only holds readers
-- back until that append ends. A batch's positions are increasing but, when other appends run
-- at the same time, not necessarily consecutive.
--
-- Compared with 0003 this drops the exclusive position lock (a queue of writers on a busy
-- machine), setval (a WAL record per append), a query on the sequence relation, and the
-- per-call planning of in_flight_namespace(), which is now a constant (see below).

-- The namespace of this schema's in-flight keys, fixed at its current value as a constant so
-- that the planner folds it into every caller.
DO $$
BEGIN
    EXECUTE format(
        'CREATE OR REPLACE FUNCTION in_flight_namespace() RETURNS bigint '
        'LANGUAGE sql IMMUTABLE AS %L',
        format('SELECT %s::bigint', in_flight_namespace())
    );
END;
$$;

CREATE OR REPLACE FUNCTION append_events(
    p_event_ids uuid[], p_aggregate_types text[], p_aggregate_ids text[], p_versions integer[],
    p_event_types text[], p_data jsonb[], p_metadata jsonb[],
    p_correlation_id text, p_causation_id text,
    p_command_id text, p_message_type text, p_result jsonb
) RETURNS bigint
LANGUAGE plpgsql SET search_path FROM CURRENT AS $$
DECLARE
    last_position bigint;
BEGIN
    IF cardinality(p_event_ids) > 0 THEN
        -- pg_sequence_last_value: NULL until the first nextval, then the last position handed out
        PERFORM pg_advisory_xact_lock_shared(
            in_flight_namespace()
            + coalesce(pg_sequence_last_value('events_position_seq'), 0) + 1
        );
        INSERT INTO events (position, event_id, aggregate_type, aggregate_id, version,
                            event_type, data, metadata, correlation_id, causation_id)
        SELECT nextval('events_position_seq'), e.*, p_correlation_id, p_causation_id
        FROM unnest(p_event_ids, p_aggregate_types, p_aggregate_ids, p_versions,
                    p_event_types, p_data, p_metadata) AS e;
        last_position := currval('events_position_seq');
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

-- Idempotency records expire (COMMAND_RESULT_RETENTION): sweeps find the old ones by age.
CREATE INDEX command_results_created_at ON command_results (created_at);
