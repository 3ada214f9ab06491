-- Discovery's registry: services, the versions they registered with their contracts, and
-- their running instances with heartbeat and health.

CREATE TABLE discovery_services (
    name            text        PRIMARY KEY,
    description     text        NOT NULL DEFAULT '',
    current_version text        NOT NULL,            -- its contracts are the routable ones
    stream_version  integer     NOT NULL DEFAULT 0,  -- of the service's stream in `events`
    registered_at   timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE discovery_versions (
    service_name    text        NOT NULL REFERENCES discovery_services (name) ON DELETE CASCADE,
    version         text        NOT NULL,
    registered_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (service_name, version)
);

-- `info` is the ContractInfo as registered (camelCase, with its input and output JSON
-- Schemas): stored whole, so fields the SDK adds later are kept without a migration.
CREATE TABLE discovery_contracts (
    service_name    text        NOT NULL,
    version         text        NOT NULL,
    message_type    text        NOT NULL,
    kind            text        NOT NULL CHECK (kind IN ('command', 'query', 'event')),
    info            json        NOT NULL,
    current         boolean     NOT NULL DEFAULT false,  -- of the service's current version
    PRIMARY KEY (service_name, version, message_type),
    FOREIGN KEY (service_name, version) REFERENCES discovery_versions ON DELETE CASCADE
);
-- A message type belongs to one service: among routable contracts each name appears once.
CREATE UNIQUE INDEX discovery_contracts_owner ON discovery_contracts (message_type) WHERE current;

CREATE TABLE discovery_instances (
    service_name    text        NOT NULL,
    instance_id     text        NOT NULL,
    version         text        NOT NULL,
    healthy         boolean     NOT NULL DEFAULT true,
    registered_at   timestamptz NOT NULL DEFAULT now(),
    last_heartbeat  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (service_name, instance_id),
    FOREIGN KEY (service_name, version) REFERENCES discovery_versions ON DELETE CASCADE
);
CREATE INDEX discovery_instances_heartbeat ON discovery_instances (last_heartbeat) WHERE healthy;
