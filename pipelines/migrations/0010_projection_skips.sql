-- The events a projection was told to skip (`banyan projections skip`): a rebuild skips them
-- too, and `banyan projections status` lists them.
ALTER TABLE projection_positions ADD COLUMN skipped bigint[] NOT NULL DEFAULT '{}';
