"""Redis's wire protocol (RESP2 and the RESP3 replies a script can give), as `redispipe`
writes commands and reads replies: whole replies out of a buffer, no await per element."""

from typing import Any

from redis.exceptions import InvalidResponse, ResponseError

CRLF = b"\r\n"


class Incomplete(Exception):
    """The buffer ends inside a reply: read more."""


class Push(list[Any]):
    """A message the server sent of its own (RESP3 push): the reply to no call."""


def pack(args: tuple[str | int | bytes, ...]) -> bytes:
    """A command as Redis reads it: an array of bulk strings."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(parts)


def reply(buffer: bytes, position: int) -> tuple[Any, int]:
    """The reply that starts at `position` of `buffer`, and where the next one starts.

    Integers as int, strings as bytes, nil as None, arrays as lists, an error reply as a
    `ResponseError` (returned, not raised: it answers one call), a push message as a `Push`.
    `Incomplete` if it is cut."""
    end = buffer.find(CRLF, position)
    if end < 0:
        raise Incomplete
    kind, line, position = buffer[position], buffer[position + 1 : end], end + 2
    if kind == 0x24:  # $ bulk string
        size = int(line)
        if size < 0:
            return None, position
        if len(buffer) < position + size + 2:
            raise Incomplete
        return buffer[position : position + size], position + size + 2
    if kind == 0x3A:  # : integer
        return int(line), position
    if kind == 0x2A or kind == 0x3E:  # * array, > push
        count = int(line)
        if count < 0:
            return None, position
        items = [] if kind == 0x2A else Push()
        for _ in range(count):
            item, position = reply(buffer, position)
            items.append(item)
        return items, position
    if kind == 0x5F:  # _ null (RESP3)
        return None, position
    if kind == 0x2B:  # + simple string
        return line, position
    if kind == 0x2D:  # - error
        return ResponseError(line.decode(errors="replace")), position
    raise InvalidResponse(f"unexpected reply type {chr(kind)!r}")
