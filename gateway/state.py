"""Everything one gateway process holds: connections, routes, limits, breakers, cache."""

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from redis.exceptions import RedisError

from gateway.admission import Admissions
from gateway.auth import Authenticator
from gateway.breaker import OPEN, Breakers
from gateway.metrics import GatewayMetrics
from gateway.ratelimit import RateLimiter
from gateway.routes import Route, RouteTable, ServiceEntry
from gateway.session_watch import Sockets
from pipelines import telemetry
from pipelines.connecting import until_connected
from pipelines.errors import PlatformError
from pipelines.event_signing import EventSignatures
from pipelines.eventfeed import EventFeed
from pipelines.querycache import QueryCache
from pipelines.redisclient import connect_redis
from pipelines.registry import DISCOVERY
from pipelines.retry import backoff_delay
from pipelines.revocation import Revocations, follow
from pipelines.rpc import RpcClient
from pipelines.settings import Settings
from pipelines.supervisor import Supervisor
from pipelines.topology import event_routing_key, queue_for

RegistrySource = Callable[[RpcClient], Awaitable[list[ServiceEntry]]]
REGISTRY_EVENTS = ("ContractsChanged", "ServiceHealthChanged", "ServiceDeregistered")
REFRESH_INTERVAL = 30.0  # seconds between registry reloads when nothing announces a change
FIRST_LOAD_WAIT = 5.0
READY_TIMEOUT = 1.0  # seconds the broker may take to answer a readiness probe
log = logging.getLogger("banyan.gateway")


class GatewayState:
    def __init__(self, settings: Settings, source: RegistrySource) -> None:
        self.settings = settings
        self.source = source
        self.rpc = RpcClient(settings.rabbitmq_url, service_name="gateway")
        self.redis = connect_redis(settings)
        self.metrics = GatewayMetrics()
        self.limiter = RateLimiter(
            self.redis,
            settings.cache_prefix,
            settings.rate_limit_per_user,
            settings.rate_limit_anonymous,
            self.metrics.redis_unavailable.inc,
        )
        self.cache = QueryCache(self.redis, settings.cache_prefix, pipe=self.limiter.pipe)
        self.admissions = Admissions(self.limiter, self.cache, self.metrics)
        self.breakers = Breakers(cooldown=settings.breaker_cooldown)
        self.revocations = Revocations(settings.jwt_expiration)
        self.auth = Authenticator(settings, self.revocations)
        self.sockets = Sockets(self.revocations)  # to close those whose token is revoked
        self.routes = RouteTable()
        self.loaded = False
        self.on_routes_changed: list[Callable[[RouteTable], None]] = []
        self.feed = EventFeed(settings.rabbitmq_url, EventSignatures.of(settings), "gateway")
        self._changed = asyncio.Event()
        self._first_load = asyncio.Event()
        self.supervisor = Supervisor(settings, log)

    async def start(self) -> None:
        settings = self.settings
        await until_connected("RabbitMQ", settings.rabbitmq_url, self.rpc.connect, settings, log)
        self.feed.listeners.append(self._on_event)
        await self.feed.start([event_routing_key(DISCOVERY, e) for e in REGISTRY_EVENTS])
        await follow(self.revocations, self.feed, self.redis, settings.cache_prefix)
        self.supervisor.run("registry", self._follow_registry)
        self.supervisor.run("event loop lag", telemetry.watch_event_loop)
        with contextlib.suppress(TimeoutError):  # serve (503s) even before discovery answers
            await asyncio.wait_for(self._first_load.wait(), FIRST_LOAD_WAIT)

    async def stop(self) -> None:
        await self.supervisor.stop()
        await self.feed.stop()
        await self.rpc.close()
        await self.limiter.pipe.close()
        await self.redis.aclose()

    async def _on_event(self, event_type: str, data: object, headers: object) -> None:
        if event_type in REGISTRY_EVENTS:
            self._changed.set()

    async def _follow_registry(self) -> None:
        """Load the registry, then reload on every change (and now and then, to be sure)."""
        attempt = 0
        while True:
            self._changed.clear()
            try:
                await self.reload()
                attempt = 0
                self._first_load.set()
            except (PlatformError, OSError) as exc:
                attempt += 1
                log.warning("cannot load the contract registry (%s); retrying", exc)
                await asyncio.sleep(min(REFRESH_INTERVAL, backoff_delay(self.settings, attempt)))
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), REFRESH_INTERVAL)

    async def reload(self) -> None:
        """Rebuild routes from the registry (at start and when contracts change)."""
        services = await self.source(self.rpc)
        self.routes = RouteTable.build(services, self.routes.version + 1)
        self.loaded = True
        for listener in self.on_routes_changed:
            listener(self.routes)

    async def readiness(self) -> dict[str, bool]:
        """Broker, Redis (each one round trip, bounded) and the registry."""
        try:
            redis_ok = bool(await self.redis.ping())
        except RedisError:
            redis_ok = False
        broker_ok = await self.rpc.reachable(READY_TIMEOUT)
        return {"broker": broker_ok, "redis": redis_ok, "registry": self.loaded}

    def queue(self, route: Route) -> str:
        return queue_for(route.service, route.contract.kind, route.contract.message_type)

    def breaker_states(self) -> dict[str, str]:
        states = {name: b.state for name, b in self.breakers.by_service.items()}
        for name, current in states.items():
            self.metrics.breaker_open.labels(name).set(1 if current == OPEN else 0)
        return states
