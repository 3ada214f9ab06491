-- The trace context of the event that started a run: its steps continue that trace, whichever
-- process drives them and however often the run is resumed.
ALTER TABLE flow_runs ADD COLUMN traceparent text;
