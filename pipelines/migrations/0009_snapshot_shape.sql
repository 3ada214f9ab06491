-- A snapshot records the shape of the aggregate class that wrote it (its fields and its fold):
-- a class whose shape changed ignores older snapshots and folds its events again.
ALTER TABLE snapshots ADD COLUMN shape text NOT NULL DEFAULT '';
