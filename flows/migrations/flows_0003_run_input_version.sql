-- A run keeps the schema version of the event that started it, so that a later version of the
-- event's class reads it through its upcasters. Runs started before count as version 1.
ALTER TABLE flow_runs ADD COLUMN input_version integer NOT NULL DEFAULT 1
    CHECK (input_version > 0);
