"""Idempotency records: whose they are, and which command they answered.

A command's record is keyed by a digest of the verified caller, the service, the message type
and the idempotency key (the message id): the same key from another caller, or for another
operation, is another command. Computed by the receiving service, it holds for every sender on
the bus. The record keeps a fingerprint of the decoded command, so that a repeat with another
body is refused instead of answered with the first result.
"""

import hashlib
from dataclasses import dataclass

from pipelines.contracts import Contract
from pipelines.eventstore import CommandRecord
from pipelines.identity import Caller

MAX_KEY_BYTES = 255  # the key travels as the AMQP message id, a short string


@dataclass(slots=True, frozen=True)
class RecordKey:
    """Where a command's idempotency record is, and the fingerprint of its command."""

    record_id: str
    message_type: str
    fingerprint: bytes

    def record(self, result: str | None) -> CommandRecord:
        return CommandRecord(self.record_id, self.message_type, result, self.fingerprint)


class RecordKeys:
    """Keys of the idempotency records of one operation of a service."""

    def __init__(self, service: str, message_type: str, secret: str) -> None:
        self.service, self.message_type = service, message_type
        # Fingerprints are keyed: one of a body holding a password cannot be tested by guessing.
        self._secret = hashlib.blake2b(secret.encode(), digest_size=32).digest()

    def of(self, key: str, caller: Caller | None, command: Contract) -> RecordKey:
        canonical = command.model_dump_json().encode()
        fingerprint = hashlib.blake2b(canonical, digest_size=16, key=self._secret).digest()
        record = record_id(key, self.service, self.message_type, caller)
        return RecordKey(record, self.message_type, fingerprint)


def record_id(key: str, service: str, message_type: str, caller: Caller | None) -> str:
    """The id of the record of `key` sent by `caller` (None: anonymous) to one operation."""
    scope = f"user:{caller.user_id}" if caller is not None else "anonymous"
    material = "\x00".join((scope, service, message_type, key)).encode()
    return hashlib.blake2b(material, digest_size=16).hexdigest()


def bounded_key(key: str) -> str:
    """A key that fits in a message id: itself, or a digest of it when it is longer."""
    if len(key.encode()) <= MAX_KEY_BYTES:
        return key
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()
