"""A running service: broker subscribers for its handlers, its database pool and its relay."""

import asyncio
import contextlib
import functools
import logging
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from faststream import AckPolicy, FastStream
from faststream.rabbit import Channel

from pipelines import telemetry
from pipelines.announce import Announcer, new_instance_id
from pipelines.asyncapi import ServiceAsyncAPI
from pipelines.collector import settle_startup_objects
from pipelines.connecting import until_connected
from pipelines.consuming import deliver_directly
from pipelines.database import create_pool, migrate
from pipelines.dispatch import CommandProcessor, EventProcessor, Processor, QueryProcessor
from pipelines.errors import PlatformError
from pipelines.eventfeed import EventFeed
from pipelines.http import HttpServer
from pipelines.logs import configure_logging
from pipelines.notifier import Notifier
from pipelines.positions import PositionWatcher
from pipelines.production import refuse_private_key
from pipelines.querycache import QueryCache, keyed_fields
from pipelines.rabbitnodes import cluster_broker
from pipelines.redisclient import connect_redis
from pipelines.registry import DISCOVERY
from pipelines.relay import EventRelay
from pipelines.replica import ReadReplica
from pipelines.revocation import follow
from pipelines.rpc import RpcClient
from pipelines.runtime import CONFIRM_CHANNEL, Runtime
from pipelines.settings import Settings
from pipelines.stopping import StoppingBroker, closing_share, draining_share
from pipelines.supervisor import Supervisor, TaskFactory
from pipelines.topology import (
    DEAD_LETTER_EXCHANGE,
    dead_letter_exchange,
    dead_letter_queue,
    event_binding_key,
    event_queue_name,
    events_exchange,
    request_queue_name,
    work_queue,
)

if TYPE_CHECKING:
    from pipelines.service import Service


# a handler's processor, its queue, the exchange the queue is bound to, and its channel
Consumer = tuple[Processor, Any, Any, Channel]


def _consumer(processor: Processor) -> Any:
    """What FastStream registers (and documents) for the queue; deliveries go to the
    processor directly (`deliver_directly`)."""

    async def consume(message: Any) -> None:
        raise AssertionError(f"{processor.queue}: deliveries go to the processor directly")

    consume.__name__ = f"{processor.queue}"
    return consume


class ServiceInstance:
    def __init__(self, service: "Service", settings: Settings) -> None:
        refuse_private_key(settings, service.name)
        self.service = service
        self.settings = settings
        self.log = logging.getLogger(f"banyan.{service.name}")
        # before FastStream's first line ("starting..."), which then goes out as JSON too
        configure_logging(service.name, settings.log_level)
        self.broker = cluster_broker(
            settings.rabbitmq_url,
            StoppingBroker,
            stop_timeout=draining_share(settings),
            # deliveries go to the processors directly (`deliver_directly`): no injection to build
            apply_types=False,
            log_level=logging.DEBUG,
            logger=logging.getLogger(f"banyan.{service.name}.broker"),
        )
        self.runtime = Runtime(service.calls, settings, self.broker)
        self.notifier = Notifier(settings)
        self.instance_id = new_instance_id(service.name)
        self.announcer: Announcer | None = None
        self.http: HttpServer | None = None
        self.metrics_http: HttpServer | None = None  # /health and /metrics on METRICS_PORT
        self.relay: EventRelay | None = None
        self.runners: dict[str, Any] = {}
        self.supervisor = Supervisor(settings, self.log)
        self.refused: PlatformError | None = None  # discovery refused this version's contracts
        self.revocations_feed = EventFeed(
            settings.rabbitmq_url, self.runtime.signatures, service.name
        )
        self._consumers = self._plan()
        self.queues = [queue.name for _, queue, _, _ in self._consumers]
        self.app = FastStream(
            self.broker,
            on_startup=[self._setup],
            after_startup=[self._start_background, settle_startup_objects],
            on_shutdown=[self._goodbye, self._stop_background],
            after_shutdown=[self._teardown],
            specification=ServiceAsyncAPI(service, settings.rabbitmq_url),
            logger=self.log,  # not FastStream's own, which colours its lines
        )

    def _plan(self) -> list[Consumer]:
        """A consumer per handler: what processes its messages, its queue and its channel."""
        requests = Channel(prefetch_count=self.settings.prefetch_count)
        events = Channel(prefetch_count=self.settings.event_prefetch_count)
        planned: list[Consumer] = []
        for handler in self.service.requests.values():
            name = request_queue_name(self.service.name, handler.contract)
            kind = CommandProcessor if handler.contract.__kind__ == "command" else QueryProcessor
            queue = work_queue(self.settings, name)
            planned.append((kind(self.runtime, handler, name), queue, None, requests))
        for handler in self.service.subscriptions.values():
            assert handler.subscriber is not None
            name = event_queue_name(handler.subscriber, handler.contract)  # type: ignore[arg-type]
            queue = work_queue(self.settings, name, event_binding_key(handler.contract))  # type: ignore[arg-type]
            planned.append(
                (EventProcessor(self.runtime, handler, name), queue, events_exchange, events)
            )
        return planned

    def _subscribe(self) -> None:
        for processor, queue, exchange, channel in self._consumers:
            subscriber = self.broker.subscriber(
                queue, exchange, channel=channel, ack_policy=AckPolicy.MANUAL, no_reply=True
            )
            subscriber(_consumer(processor))
            deliver_directly(subscriber, processor)

    async def start(self) -> None:
        """Start without the FastStream runner (tests, embedding)."""
        await self._setup()
        await self.broker.start()
        await self._start_background()

    async def stop(self) -> None:
        """Finish in-flight messages, then close everything."""
        await self._goodbye()
        await self._stop_background()
        await self.broker.stop()
        await self._teardown()

    async def _setup(self) -> None:
        telemetry.start(self.service.name, self.settings)
        settings, log = self.settings, self.log
        await until_connected("RabbitMQ", settings.rabbitmq_url, self.broker.connect, settings, log)
        # whatever PostgreSQL answers (too many clients, starting up, a schema another process
        # is migrating): wait for it, saying so
        pool = await until_connected(
            "PostgreSQL", settings.database_url, self._open_database, settings, log, (Exception,)
        )
        await self.notifier.start()
        self.runtime.attach(pool, self.notifier)
        self.runtime.positions = PositionWatcher(self.settings, pool)
        await self.runtime.positions.start()
        self.runtime.replica = await ReadReplica.open(self.settings)
        if self.service.projections or any(h.cache for h in self.service.requests.values()):
            client = connect_redis(self.settings)
            keyed = keyed_fields(self.service.requests.values())
            self.runtime.cache = QueryCache(client, self.settings.cache_prefix, keyed)
        await self._declare_dead_letters()
        await self.broker.declare_exchange(events_exchange)
        await self._follow_revocations()
        self.runtime.rpc = await RpcClient(
            self.settings.rabbitmq_url, service_name=self.service.name
        ).connect()
        if self.service.calls.contracts and (problem := self.runtime.identity.credential_problem()):
            self.log.error("%s: its sends will be refused until then", problem)
        await self._introduce()
        if self.refused is None:
            self._subscribe()

    async def _follow_revocations(self) -> None:
        """Before the first request: tokens revoked are refused from then on."""
        client = connect_redis(self.settings)
        try:
            await self.revocations_feed.start([])
            revocations, prefix = self.runtime.revocations, self.settings.cache_prefix
            await follow(revocations, self.revocations_feed, client, prefix)
        finally:
            await client.aclose()

    async def _introduce(self) -> None:
        """Register with discovery before consuming anything: a version it refuses takes no
        message, not even one waiting in a queue when it starts."""
        if not self.settings.announce_enabled or self.runtime.rpc is None:
            return
        registration = self.service.registration(self.instance_id)
        self.announcer = Announcer(registration, self.runtime.rpc, self.settings, self.refuse)
        if self.service.name != DISCOVERY:  # which answers registrations once it consumes
            await self.announcer.introduce()

    async def _open_database(self) -> Any:
        await migrate(self.settings, [self.service.migrations] if self.service.migrations else [])
        return await create_pool(self.settings)

    async def _declare_dead_letters(self) -> None:
        await self.broker.declare_exchange(dead_letter_exchange)
        for name in self.queues:
            dlq = await self.broker.declare_queue(dead_letter_queue(self.settings, name))
            await dlq.bind(DEAD_LETTER_EXCHANGE, routing_key=dlq.name)

    async def _start_background(self) -> None:
        """The relay and the projection runners: each leads only where it holds its lock."""
        pool = self.runtime.pool
        if pool is None:
            return
        if self.settings.relay_enabled:
            channel = await self.runtime.channel(CONFIRM_CHANNEL)
            self.relay = EventRelay(self.settings, channel, notifier=self.notifier)
            self._spawn(self.relay.run, "relay")
        if self.announcer is not None:
            self._spawn(self.announcer.run, "announcer")
        await self._start_http()
        await self._start_metrics_port()
        self._spawn(lambda: telemetry.sample_forever(self), "telemetry")
        self._spawn(telemetry.watch_event_loop, "event loop lag")
        invalidate = self.runtime.cache.invalidate if self.runtime.cache else None
        for task in self.service.background_tasks:
            self._spawn(functools.partial(task, self), task.__name__)
        for projection in self.service.projections if self.refused is None else []:
            runner = projection.runner(self.settings, pool, invalidate, self.notifier)
            self.runners[projection.name] = runner
            self._spawn(runner.run, f"projection {projection.name}")

    async def _start_http(self) -> None:
        port = self.settings.http_port(self.service.name, self.service.http_port)
        if port is None:
            return
        app = self.service.http
        app.state.instance = self
        if not any(getattr(r, "path", None) == "/health" for r in app.routes):
            app.add_api_route("/health", self.health, methods=["GET"])
        telemetry.expose_metrics(app)
        self.http = HttpServer(
            app, self.settings.http_host, port, self.settings.forwarded_allow_ips
        )
        await self.http.start()

    async def _start_metrics_port(self) -> None:
        if self.settings.metrics_port is None:
            return
        app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
        app.add_api_route("/health", self.health, methods=["GET"])
        telemetry.expose_metrics(app)
        self.metrics_http = HttpServer(app, self.settings.http_host, self.settings.metrics_port)
        await self.metrics_http.start()

    async def refuse(self, rejection: PlatformError) -> None:
        """Discovery refused this version's contracts: consume no request or event and run no
        projection, so that the running version alone answers; `/health` says why."""
        self.refused = rejection
        for subscriber in self.broker.subscribers:
            await subscriber.stop()
        await self.supervisor.cancel(
            [task for task in self.supervisor.tasks if task.startswith("projection ")]
        )
        self.log.error("refused by discovery: consuming nothing until a compatible version runs")

    async def health(self) -> dict[str, Any]:
        """Liveness of this process: broker connected, database pool open, no background
        task failing (`failing` names each, with its last error)."""
        failing = self.supervisor.failing()
        healthy = self.broker.running and self.runtime.pool and not failing
        body: dict[str, Any] = {
            "status": "ok" if healthy else "degraded",
            "service": self.service.name,
            "version": self.service.version,
            "instanceId": self.instance_id,
            "failing": failing,
        }
        if self.refused is not None:
            body["status"], body["refused"] = "refused", self.refused.to_body()["error"]
        return body

    async def _goodbye(self) -> None:
        """Tell discovery this instance is leaving, before its consumers stop (within a share
        of GRACEFUL_TIMEOUT: RabbitMQ may not answer)."""
        if self.announcer is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.announcer.deregister(), closing_share(self.settings))

    def _spawn(self, start: TaskFactory, name: str) -> None:
        in_service = telemetry.in_service(self.service.name)  # its spans name this service
        self.supervisor.run(name, start, context=in_service)

    async def _stop_background(self) -> None:
        await self.supervisor.stop()

    async def _teardown(self) -> None:
        """Close every connection, politely within its share of GRACEFUL_TIMEOUT; then cut
        what is left (a server that does not answer would hold the process forever)."""
        share = closing_share(self.settings)
        try:
            await asyncio.wait_for(self._close(), share)
        except TimeoutError:
            self.log.warning("connections not closed within %g s: cut", share)
            if self.runtime.pool is not None:
                self.runtime.pool.terminate()
                self.runtime.pool = None

    async def _close(self) -> None:
        await self.notifier.stop()
        await self.revocations_feed.stop()
        for server in (self.http, self.metrics_http):
            if server is not None:
                await server.stop()
        if self.runtime.rpc is not None:
            await self.runtime.rpc.close()
        if self.runtime.positions is not None:
            await self.runtime.positions.stop()
        if self.runtime.cache is not None:
            await self.runtime.cache.close()
        if self.runtime.replica is not None:
            await self.runtime.replica.close()
        if self.runtime.pool is not None:
            await self.runtime.pool.close()
            self.runtime.pool = None
