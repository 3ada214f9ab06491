-- Idempotency records belong to one caller and one operation: `command_id` now holds a digest
-- of (caller, service, message type, key), see pipelines/idempotency.py. Records made before
-- hold the bare key: they no longer match, and expire as usual.
--
-- `fingerprint` is a keyed digest of the command a record answered: a repeat with another body
-- is refused (IDEMPOTENCY_KEY_REUSED), never answered with the first result. A NULL `result`
-- means the result held secrets, which are never kept: such a command is not answered twice.
ALTER TABLE command_results ADD COLUMN fingerprint bytea;
