"""A started service or gateway process stops the garbage collector from scanning its
start-up objects and collects young objects less often, so that its full collections come
soon and cheaply (resident memory stays level) and short-lived objects cost it no scans."""

import gc
from collections.abc import Iterator

import pytest

from gateway.app import create_app
from gateway.registry import from_services
from pipelines.collector import YOUNG_OBJECTS, settle_startup_objects
from pipelines.settings import Settings


@pytest.fixture
def unfrozen() -> Iterator[None]:
    thresholds = gc.get_threshold()
    gc.unfreeze()
    yield
    gc.unfreeze()  # the test process's objects are not ours to keep frozen
    gc.set_threshold(*thresholds)


@pytest.mark.unit
@pytest.mark.usefixtures("unfrozen")
async def test_settling_freezes_the_objects_alive_then() -> None:
    alive: list[int] = []  # a container: tracked by the collector until frozen
    assert gc.is_tracked(alive)
    await settle_startup_objects()
    assert gc.get_freeze_count() > 0
    assert not any(o is alive for o in gc.get_objects())  # no longer scanned


@pytest.mark.unit
@pytest.mark.usefixtures("unfrozen")
async def test_settling_collects_young_objects_less_often() -> None:
    older = gc.get_threshold()[1:]
    await settle_startup_objects()
    assert gc.get_threshold() == (YOUNG_OBJECTS, *older)


@pytest.mark.usefixtures("unfrozen")
async def test_the_gateway_process_settles_once_started(settings: Settings) -> None:
    embedded = create_app(settings, from_services([]))
    async with embedded.router.lifespan_context(embedded):
        assert gc.get_threshold()[0] != YOUNG_OBJECTS  # a host's process is left as it is
    served = create_app(settings, from_services([]), settle=True)  # as `uvicorn gateway:app`
    async with served.router.lifespan_context(served):
        assert gc.get_threshold()[0] == YOUNG_OBJECTS
        assert gc.get_freeze_count() > 0
