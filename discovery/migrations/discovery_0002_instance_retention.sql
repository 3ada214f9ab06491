-- Unhealthy instances by the age of their last heartbeat: the health monitor forgets those
-- silent for longer than the retention (DISCOVERY_INSTANCE_RETENTION).
CREATE INDEX discovery_instances_unhealthy ON discovery_instances (last_heartbeat)
    WHERE NOT healthy;
