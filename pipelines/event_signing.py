"""Signatures that tell the log's events from anything else published on the bus.

The relay signs each event it publishes: HMAC-SHA256 with `EVENT_SIGNING_KEY` over the headers
it took from the log (event id, type, service, aggregate, version, position, time, correlation
and causation), the content encoding and the exact body bytes. Every receiver checks the
signature before it decompresses or decodes anything, and that the event is the type its queue
is for (a genuine event republished under another routing key is refused too).

A broker login alone cannot make an event that receivers accept. A process holding the key can:
every platform process that relays or receives events holds it.
"""

import hashlib
import hmac
import struct
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, get_args

from pipelines import headers as h

if TYPE_CHECKING:
    from pipelines.settings import Settings

# what a receiver believes of an event besides its body: each header the relay takes from the log
SIGNED_HEADERS = (
    h.EVENT_ID,
    h.MESSAGE_TYPE,
    h.SERVICE_NAME,
    h.AGGREGATE_TYPE,
    h.AGGREGATE_ID,
    h.EVENT_VERSION,
    h.GLOBAL_POSITION,
    h.OCCURRED_AT,
    h.CORRELATION_ID,
    h.CAUSATION_ID,
    h.SCHEMA_VERSION,
)
# every field's length first: no two different sets of fields read the same
LENGTHS = struct.Struct(f">{len(SIGNED_HEADERS) + 2}Q")
# why an event was refused (a closed set: metric labels)
Forgery = Literal["unsigned", "bad_signature", "misrouted"]
FORGERIES: tuple[Forgery, ...] = get_args(Forgery)
WHY: dict[Forgery, str] = {
    "unsigned": "no event relay signed it: the event log does not hold it",
    "bad_signature": "its signature does not match it: forged, or altered after the log",
    "misrouted": "it is signed as another event type than its queue's",
}


class ForgedEvent(Exception):
    """An event that did not come from the log as it is, or not for this queue."""

    def __init__(self, forgery: Forgery) -> None:
        super().__init__(f"refused as forged ({forgery}): {WHY[forgery]}")
        self.forgery = forgery


class EventSignatures:
    """Signs and checks events with one key; the keyed state is computed once per process."""

    def __init__(self, key: str) -> None:
        self._keyed = hmac.new(key.encode(), digestmod=hashlib.sha256)

    @classmethod
    def of(cls, settings: "Settings") -> "EventSignatures":
        return cls(settings.event_signing_key.get_secret_value())

    def sign(self, headers: Mapping[str, Any], body: bytes, encoding: str | None) -> str:
        """The signature of an event with these headers, wire body and content encoding."""
        fields = [_bytes(headers.get(name)) for name in SIGNED_HEADERS]
        fields += [(encoding or "").encode(), body]
        mac = self._keyed.copy()
        mac.update(LENGTHS.pack(*map(len, fields)) + b"".join(fields))
        return mac.hexdigest()

    def forgery(
        self,
        headers: Mapping[str, Any],
        body: bytes,
        encoding: str | None,
        expected_type: str | None = None,
    ) -> Forgery | None:
        """Why the event must be refused, or None when the log's relay sent it as it is (and,
        given `expected_type`, it is of that type)."""
        signature = headers.get(h.EVENT_SIGNATURE)
        if signature is None:
            return "unsigned"
        expected = self.sign(headers, body, encoding).encode()
        if not hmac.compare_digest(expected, _bytes(signature)):
            return "bad_signature"
        if expected_type and _bytes(headers.get(h.MESSAGE_TYPE)) != expected_type.encode():
            return "misrouted"
        return None


def _bytes(value: Any) -> bytes:
    if value is None:
        return b""
    if isinstance(value, bytes):
        return value
    return str(value).encode()
