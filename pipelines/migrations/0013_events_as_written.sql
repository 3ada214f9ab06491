-- An event's data and metadata are kept as written (json) instead of as jsonb. The log is read
-- far more than it is searched: PostgreSQL sends a jsonb value by rebuilding its text (about
-- half of the server's time per event read) and parses every appended one into jsonb, where
-- json is checked on the way in and sent as stored. Fields also keep the order they were
-- written in. This rewrites the table once: appends wait until it is done.
-- jsonb refused the NUL character (\u0000), which projections' documents (jsonb) cannot hold
-- either: the log still refuses it.
ALTER TABLE events
    ALTER COLUMN data TYPE json USING data::json,
    ALTER COLUMN metadata TYPE json USING metadata::json,
    ADD CONSTRAINT events_without_nul
        CHECK (strpos(data::text, '\u0000') = 0 AND strpos(metadata::text, '\u0000') = 0);

-- read_log_versioned as written: the readers of this release.
CREATE FUNCTION read_log_as_written(p_after bigint, p_limit integer, p_types text[])
RETURNS TABLE (
    bound bigint, "position" bigint, event_id uuid, aggregate_type text, aggregate_id text,
    version integer, event_type text, data json, metadata json, occurred_at timestamptz,
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

-- The previous release's readers (read_log_versioned, and read_log through it) still get
-- jsonb during a rolling deploy. Its statements that select from the table itself are
-- prepared again: asyncpg does so by itself outside a transaction; inside one, that
-- transaction fails once.
CREATE OR REPLACE FUNCTION read_log_versioned(p_after bigint, p_limit integer, p_types text[])
RETURNS TABLE (
    bound bigint, "position" bigint, event_id uuid, aggregate_type text, aggregate_id text,
    version integer, event_type text, data jsonb, metadata jsonb, occurred_at timestamptz,
    correlation_id text, causation_id text, schema_version integer
)
LANGUAGE sql VOLATILE SET search_path FROM CURRENT AS $$
    SELECT bound, "position", event_id, aggregate_type, aggregate_id, version, event_type,
           data::jsonb, metadata::jsonb, occurred_at, correlation_id, causation_id,
           schema_version
      FROM read_log_as_written(p_after, p_limit, p_types)
$$;
