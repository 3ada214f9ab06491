-- Whose identity each step was sent with: the id of the user the run acts for, or
-- service:{name} (the hosting service's own). Steps journaled before this knew only the latter.
ALTER TABLE flow_steps ADD COLUMN acting_as text NOT NULL DEFAULT '';
