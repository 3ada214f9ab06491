-- What each service sends (its `calls=`, as message types), so operators see who calls what.
ALTER TABLE discovery_services ADD COLUMN calls text[] NOT NULL DEFAULT '{}';
