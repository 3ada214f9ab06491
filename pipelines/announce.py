"""A service instance introducing itself to discovery: register, heartbeat, deregister.

Discovery may start after the service, or restart: registration is retried in the background
with backoff, and a heartbeat that discovery does not recognise triggers a new registration.
An instance introduces itself before it consumes anything (`introduce`), so that a version
discovery refuses never takes a message; if discovery does not answer in time the instance
consumes all the same and keeps trying. A rejected registration (an incompatible contract
change, a message type owned by another service) is logged with discovery's reason and handed
to `on_refused`: the instance then consumes nothing (see `ServiceInstance.refuse`).
"""

import asyncio
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable

from pipelines import telemetry
from pipelines.errors import PlatformError
from pipelines.registry import DISCOVERY, DeregisterService, Heartbeat, RegisterService
from pipelines.retry import backoff_delay
from pipelines.rpc import Response, RpcClient
from pipelines.settings import Settings

log = logging.getLogger("banyan.announce")
REPLY_TIMEOUT = 5.0
HEARTBEAT_TRACED_EVERY = 60.0  # seconds: one heartbeat a minute is traced, the others are not


def new_instance_id(service: str) -> str:
    return f"{service}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


class Announcer:
    def __init__(
        self,
        message: RegisterService,
        rpc: RpcClient,
        settings: Settings,
        on_refused: Callable[[PlatformError], Awaitable[None]],
    ) -> None:
        self.message = message
        self.rpc = rpc
        self.settings = settings
        self.on_refused = on_refused
        self.registered = asyncio.Event()
        self.rejection: PlatformError | None = None
        self._traced_at = -HEARTBEAT_TRACED_EVERY

    async def run(self) -> None:
        """Register (retrying until discovery answers), then heartbeat forever."""
        while True:
            if not self.registered.is_set() and self.rejection is None:
                await self._register()
            else:
                await asyncio.sleep(self.settings.heartbeat_interval)
                await self._heartbeat()

    async def introduce(self) -> None:
        """One registration attempt, made before the instance consumes anything: accepted,
        refused (`on_refused` has run), or unanswered (`run` keeps trying)."""
        try:
            reply = await self.rpc.send(DISCOVERY, self.message, timeout=REPLY_TIMEOUT)
        except PlatformError:
            log.warning(
                "discovery did not answer %s %s's registration; consuming, and registering "
                "as soon as it answers",
                self.message.service_name,
                self.message.version,
            )
            return
        await self._answered(reply)

    async def _register(self) -> None:
        attempt = 0
        while True:
            attempt += 1
            try:
                reply = await self.rpc.send(DISCOVERY, self.message, timeout=REPLY_TIMEOUT)
            except PlatformError:  # no answer yet: discovery is not running
                await asyncio.sleep(min(30.0, backoff_delay(self.settings, attempt)))
                continue
            await self._answered(reply)
            return

    async def _answered(self, reply: Response) -> None:
        if reply.ok:
            self.registered.set()
            log.info("registered %s %s", self.message.service_name, self.message.version)
            return
        self.rejection = reply.error()
        log.error(
            "discovery rejected %s %s: %s %s",
            self.message.service_name,
            self.message.version,
            self.rejection.message,
            self.rejection.details or "",
        )
        await self.on_refused(self.rejection)

    async def _heartbeat(self) -> None:
        beat = Heartbeat(
            service_name=self.message.service_name, instance_id=self.message.instance_id
        )
        traced = time.monotonic() - self._traced_at >= HEARTBEAT_TRACED_EVERY
        if traced:
            self._traced_at = time.monotonic()
        quiet = contextlib.nullcontext() if traced else telemetry.unsampled()
        with quiet, contextlib.suppress(PlatformError):
            reply = await self.rpc.send(DISCOVERY, beat, timeout=REPLY_TIMEOUT)
            if reply.ok and not reply.result()["known"]:
                self.registered.clear()

    async def deregister(self) -> None:
        if not self.registered.is_set():
            return
        goodbye = DeregisterService(
            service_name=self.message.service_name, instance_id=self.message.instance_id
        )
        with contextlib.suppress(PlatformError, OSError):
            await self.rpc.send(DISCOVERY, goodbye, timeout=2.0)
