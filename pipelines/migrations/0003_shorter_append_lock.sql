-- Appends hold the position lock only while they take their positions, not while they insert.
--
-- Readers rely on the shared in-flight lock an append takes (keyed by its first position,
-- held until its transaction ends) before its positions are handed out: when the insert then
-- happens does not matter, so it no longer runs under the exclusive lock, and no
-- subtransaction is needed to release that lock on a failed insert.

CREATE OR REPLACE FUNCTION append_events(
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
        SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END
          INTO first_position FROM events_position_seq;
        PERFORM pg_advisory_xact_lock_shared(in_flight_namespace() + first_position);
        PERFORM setval('events_position_seq', first_position + n - 1);
        PERFORM pg_advisory_unlock(assign_key);
        last_position := first_position + n - 1;
        INSERT INTO events (position, event_id, aggregate_type, aggregate_id, version,
                            event_type, data, metadata, correlation_id, causation_id)
        SELECT first_position + i - 1, p_event_ids[i], p_aggregate_types[i],
               p_aggregate_ids[i], p_versions[i], p_event_types[i], p_data[i],
               p_metadata[i], p_correlation_id, p_causation_id
        FROM generate_subscripts(p_event_ids, 1) AS i;
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
