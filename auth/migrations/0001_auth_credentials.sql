-- Password hashes live here, not in the event log: events are kept forever and published on
-- the bus. A user's events name their current row (credential_id); a row no event names is
-- left over from a command that did not commit, and is purged later.

CREATE TABLE auth_credentials (
    credential_id   uuid        PRIMARY KEY,
    user_id         text        NOT NULL,
    password_hash   text        NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX auth_credentials_user ON auth_credentials (user_id);
