-- Each event records the schema version of the class that wrote it (upcasters turn older
-- versions into the current one on read). Events written before count as version 1.
ALTER TABLE events ADD COLUMN schema_version integer NOT NULL DEFAULT 1
    CHECK (schema_version > 0);

-- read_log with the version (last). read_log keeps its columns for the instances of the
-- previous release that run beside this one during a rolling deploy (it reads through this).
CREATE FUNCTION read_log_versioned(p_after bigint, p_limit integer, p_types text[])
RETURNS TABLE (
    bound bigint, "position" bigint, event_id uuid, aggregate_type text, aggregate_id text,
    version integer, event_type text, data jsonb, metadata jsonb, occurred_at timestamptz,
    correlation_id text, causation_id text, schema_version integer
)
LANGUAGE plpgsql VOLATILE SET search_path FROM CURRENT AS $$
#variable_conflict use_column
BEGIN
    bound := readable_bound();
    RETURN QUERY
        SELECT bound, e.position, e.event_id, e.aggregate_type, e.aggregate_id, e.version,
               e.event_type, e.data, e.metadata, e.occurred_at, e.correlation_id, e.causation_id,
               e.schema_version
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

-- The previous release's readers get the same page, without the version.
CREATE OR REPLACE FUNCTION read_log(p_after bigint, p_limit integer, p_types text[])
RETURNS TABLE (
    bound bigint, "position" bigint, event_id uuid, aggregate_type text, aggregate_id text,
    version integer, event_type text, data jsonb, metadata jsonb, occurred_at timestamptz,
    correlation_id text, causation_id text
)
LANGUAGE sql VOLATILE SET search_path FROM CURRENT AS $$
    SELECT bound, "position", event_id, aggregate_type, aggregate_id, version, event_type, data,
           metadata, occurred_at, correlation_id, causation_id
      FROM read_log_versioned(p_after, p_limit, p_types)
$$;
