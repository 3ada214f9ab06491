-- Processed-event records expire like command results (PROCESSED_EVENT_RETENTION): the sweep
-- takes the oldest first.
CREATE INDEX processed_events_processed_at ON processed_events (processed_at);
