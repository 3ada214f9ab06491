"""Running flows in a service: each flow's starting event, and an engine in every process.

service = Service("fulfilment", migrations=flows.MIGRATIONS)
flows.host(service, order_fulfilment)
"""

import functools
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from flows import crashpoints, deadlines
from flows.engine import Engine
from flows.flow import Flow
from flows.run import FlowError
from flows.runs import RunTable, run_id
from flows.settings import FlowSettings
from pipelines import Context, Event, Service
from pipelines.instance import ServiceInstance
from pipelines.runtime import Runtime

MIGRATIONS = Path(__file__).parent / "migrations"


class Host:
    def __init__(self, service: Service, flows: Sequence[Flow[Any]]) -> None:
        if service.migrations != MIGRATIONS:
            raise FlowError(
                f"service {service.name} hosts flows: declare it with migrations=flows.MIGRATIONS"
            )
        self.flows = {flow.name: flow for flow in flows}
        self.engines: set[Engine] = set()
        for flow in flows:
            if flow.run_steps is None:
                raise FlowError(f"flow {flow.name} has no @steps function")
            service.on(flow.trigger, subscriber=flow.name)(self._starter(flow))
        service.background(self.run_engine)
        service.background(deadlines.watch)

    async def run_engine(self, instance: ServiceInstance) -> None:
        engine = Engine(self.flows, instance, FlowSettings())
        self.engines.add(engine)
        try:
            await engine.run()
        finally:
            self.engines.discard(engine)

    def _starter(self, flow: Flow[Any]) -> Callable[[Event, Context], Awaitable[None]]:
        async def start(event: Event, ctx: Context) -> None:
            """Record the run (once, however often the event comes); the engine drives it."""
            key = flow.key(event)
            causation = str(ctx.event.event_id) if ctx.event is not None else ctx.message_id
            data = event.model_dump(mode="json")
            runs = RunTable(ctx.store.pool)
            version = event.__version__
            started = await runs.start(
                flow.name, key, data, ctx.correlation_id, causation, version, ctx.traceparent
            )
            if started:
                crashpoints.reached("started", run_id(flow.name, key))
            for engine in self.engines:
                engine.wake()

        start.__name__ = f"start_{flow.name.replace('-', '_')}"
        start.in_memory = functools.partial(_in_memory, flow)  # type: ignore[attr-defined]
        return start


def _in_memory(flow: Flow[Any], runtime: Runtime) -> Callable[[Event, Context], Awaitable[None]]:
    """What the test kit runs instead of `start` (see `flows.testing`)."""
    from flows.testing import in_memory_starter

    return in_memory_starter(flow, runtime)


def host(service: Service, *flows: Flow[Any]) -> Host:
    """Run `flows` in `service`: every instance of it drives their runs."""
    return Host(service, flows)
