-- One snapshot per aggregate and shape: during a rolling deploy the old and the new class each
-- start from their own snapshot, instead of replacing each other's and folding the whole
-- history on every load. A shape not written for a day is dropped by the next snapshot.
-- Instances of a release before this one, while they still run, cannot write snapshots (their
-- statement names the old key): a warning in their log, and they load from their last
-- snapshot and the events as before.
ALTER TABLE snapshots DROP CONSTRAINT snapshots_pkey;
ALTER TABLE snapshots ADD PRIMARY KEY (aggregate_type, aggregate_id, shape);
