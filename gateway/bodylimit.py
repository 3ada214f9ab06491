"""The request body limit (`MAX_BODY_BYTES`) for bodies that do not announce their length.

A body with a Content-Length over the limit is refused before anything reads it (`Correlate`,
`edge`); one without (chunked) is counted as it arrives, and refused (413) once it passes the
limit, without reading the rest, whichever route reads it.
"""

from starlette.types import Message, Receive

from gateway.errors import GatewayError


def too_large(limit: int) -> GatewayError:
    return GatewayError(413, "PAYLOAD_TOO_LARGE", f"request body over {limit} bytes")


def counted(receive: Receive, limit: int) -> Receive:
    """`receive`, raising 413 PAYLOAD_TOO_LARGE when the body received passes `limit` bytes."""
    received = 0

    async def receive_counted() -> Message:
        nonlocal received
        message = await receive()
        received += len(message.get("body", b""))
        if received > limit:
            raise too_large(limit)
        return message

    return receive_counted
