"""What the FastAPI app's CORS and GZip layers do to an answer, in one step, for the answers
`gateway.edge` sends itself: the same headers in the same order, the same compressed bytes.

It reads the settings off Starlette's own middleware objects (the ones the app is given are
built from the same options), and `tests/test_gateway_edge.py` holds the two side by side.
"""

import asyncio
import zlib
from collections.abc import Mapping
from typing import Any

from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.gzip import GZipMiddleware
from starlette.types import Receive, Scope, Send

Raw = list[tuple[bytes, bytes]]
VARY = b"vary"
ORIGIN = b"Origin"


class Finishing:
    def __init__(self, cors: CORSMiddleware, gzip: GZipMiddleware) -> None:
        self.cors = cors
        self.minimum_size = gzip.minimum_size
        self.compresslevel = gzip.compresslevel
        self.thread_minimum_size = gzip.thread_minimum_size
        self._simple = [(k.lower().encode("latin-1"), v.encode("latin-1"))
                        for k, v in cors.simple_headers.items()]  # fmt: skip

    @classmethod
    def of(cls, cors: Mapping[str, Any], minimum_size: int) -> "Finishing":
        """As the app's `CORSMiddleware` with options `cors` and its `GZipMiddleware` finish."""
        held = CORSMiddleware(_held_only, **cors), GZipMiddleware(_held_only, minimum_size)
        return cls(*held)

    async def finish(self, headers: Raw, body: bytes, origin: str | None, accepted: str) -> bytes:
        """Add to `headers` (an answer's, JSON, whole) what CORS and GZip add, for a request
        from `origin` that accepts the encodings `accepted`; the body to send."""
        headers += self._cors(origin)
        if len(body) < self.minimum_size:
            return body
        self._vary(headers, b"Accept-Encoding")
        if "gzip" not in accepted:
            return body
        if len(body) >= self.thread_minimum_size:  # inline, it would hold up the event loop
            body = await asyncio.to_thread(self._compressed, body)
        else:
            body = self._compressed(body)
        headers[:] = [(k, str(len(body)).encode()) if k == b"content-length" else (k, v)
                      for k, v in headers]  # fmt: skip
        headers.append((b"content-encoding", b"gzip"))
        return body

    def _cors(self, origin: str | None) -> Raw:
        """CORSMiddleware's headers of a simple (not preflight) answer."""
        if origin is None:
            return [(VARY, ORIGIN)]
        added = dict(self._simple)
        cors = self.cors
        if (cors.allow_all_origins and cors.allow_credentials) or (
            not cors.allow_all_origins and cors.is_allowed_origin(origin)
        ):
            added[b"access-control-allow-origin"] = origin.encode("latin-1")
        added[VARY] = ORIGIN
        return list(added.items())

    @staticmethod
    def _vary(headers: Raw, value: bytes) -> None:
        for i, (key, existing) in enumerate(headers):
            if key == VARY:
                headers[i] = (VARY, existing + b", " + value)
                return
        headers.append((VARY, value))

    def _compressed(self, body: bytes) -> bytes:
        compressor = zlib.compressobj(self.compresslevel, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        return compressor.compress(body) + compressor.flush()


async def _held_only(scope: Scope, receive: Receive, send: Send) -> None:
    raise RuntimeError("a middleware kept for its settings is never called")
