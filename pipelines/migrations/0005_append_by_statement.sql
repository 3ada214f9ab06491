-- Appends are single statements sent by the SDK (pipelines/append_statements.py): the same
-- in-flight lock and nextval positions as append_events(), without a PL/pgSQL call around
-- them, and with scalars instead of arrays for the usual single event.
DROP FUNCTION append_events(
    uuid[], text[], text[], integer[], text[], jsonb[], jsonb[], text, text, text, text, jsonb
);
