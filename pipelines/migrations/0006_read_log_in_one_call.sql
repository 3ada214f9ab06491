-- A reader's next page of the log and its readable bound in one round trip.
--
-- The bound must be taken before the snapshot the events are read with (see readable_bound).
-- In a VOLATILE function each statement takes a fresh snapshot (READ COMMITTED), so the
-- RETURN QUERY below reads with a snapshot taken after the bound. Every row carries the bound;
-- when no event matches, one row carries it alone (its position is NULL).
CREATE FUNCTION read_log(p_after bigint, p_limit integer, p_types text[])
RETURNS TABLE (
    bound bigint, "position" bigint, event_id uuid, aggregate_type text, aggregate_id text,
    version integer, event_type text, data jsonb, metadata jsonb, occurred_at timestamptz,
    correlation_id text, causation_id text
)
LANGUAGE plpgsql VOLATILE SET search_path FROM CURRENT AS $$
#variable_conflict use_column
BEGIN
    bound := readable_bound();
    RETURN QUERY
        SELECT bound, e.position, e.event_id, e.aggregate_type, e.aggregate_id, e.version,
               e.event_type, e.data, e.metadata, e.occurred_at, e.correlation_id, e.causation_id
          FROM events e
         WHERE e.position > p_after AND e.position < bound
           AND (p_types IS NULL OR e.event_type = ANY (p_types))
         ORDER BY e.position
         LIMIT p_limit;
    IF NOT FOUND THEN
        RETURN NEXT;
    END IF;
END;
$$;
