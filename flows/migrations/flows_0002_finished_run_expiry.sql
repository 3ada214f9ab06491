-- Finished runs expire (FLOWS_RUN_RETENTION): sweeps find the old ones by when they finished.
-- Their steps go with them (flow_steps.run_id ... ON DELETE CASCADE).
CREATE INDEX flow_runs_finished ON flow_runs (finished_at) WHERE finished_at IS NOT NULL;
