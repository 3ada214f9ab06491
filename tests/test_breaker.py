"""The circuit breaker lets a probe through as soon as its cool-down ends."""

from gateway.breaker import CLOSED, HALF_OPEN, OPEN, Breaker


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def opened(clock: Clock) -> Breaker:
    breaker = Breaker(min_requests=4, clock=clock)
    for _ in range(4):
        breaker.record(False)
    assert breaker.state == OPEN and not breaker.allow()
    return breaker


def test_a_probe_goes_through_when_the_cooldown_ends_and_closes_it() -> None:
    clock = Clock()
    breaker = opened(clock)
    clock.now += 4.9
    assert not breaker.allow()  # the default cool-down is 5 s, not 30
    clock.now += 0.1
    assert breaker.allow() and breaker.state == HALF_OPEN
    assert not breaker.allow()  # one probe at a time
    breaker.record(True)
    assert breaker.state == CLOSED and breaker.allow()


def test_a_failed_probe_opens_it_again() -> None:
    clock = Clock()
    breaker = opened(clock)
    clock.now += 5.0
    assert breaker.allow()
    breaker.record(False)
    assert breaker.state == OPEN and not breaker.allow()
