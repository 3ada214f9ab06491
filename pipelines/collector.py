"""How a platform process (a service, the gateway, a rebuild) sets Python's garbage collector
once it has started.

Its requests, deliveries and log reads make many short-lived objects that reference counting
frees, not the collector. With the default thresholds the collector scans the youngest
generation every 700 allocations and, as survivors pile up, the whole heap: a fifth of the
CPU of reading the log or rebuilding a projection. Once started, a process moves what it has
built so far (modules, contracts, connections) out of the collector's reach, and collects the
youngest generation less often: a page of events read is gone before a collection would
scan it, and reference cycles (frames, futures, exceptions) still go soon after.
"""

import gc

# Allocations between collections of the youngest generation (the default is 700). A service
# or gateway lives long: at 50,000 the orders service's resident memory grew 4-16 MB a minute
# at 780 requests/s, its cycles waiting too long; at 10,000 it stays level, and a log read
# gains as much. A rebuild ends when its work does: it waits longest (another tenth of its CPU).
YOUNG_OBJECTS = 10_000
REBUILD_YOUNG_OBJECTS = 50_000


def tune_collector(young_objects: int = YOUNG_OBJECTS) -> None:
    """Freeze what is alive now and collect the youngest generation less often."""
    gc.freeze()
    gc.set_threshold(young_objects, *gc.get_threshold()[1:])


async def settle_startup_objects() -> None:
    """Once a platform process has started, its modules, contracts and connections stay for
    its life: the collector stops scanning them and collects young objects less often. Its
    full collections, due when the objects that survived younger ones grow by a quarter of
    the rest, then come soon and cost little; before, the requests' reference cycles
    (messages, frames, futures) piled up as garbage until a quarter of the ~145,000 start-up
    objects was reached (about 1 MB in 25 s at 80 requests/s, freed only by a full
    collection). Run by the processes `faststream run` and uvicorn start, not by tests or
    embedding hosts: the host process's own objects are not ours to freeze."""
    gc.collect()
    tune_collector()
