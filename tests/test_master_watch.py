"""Which master the Sentinels confirm (cache/backends/watch.py), against stand-in Sentinels:
a majority of them naming one node and none naming another, never an old answer."""

from __future__ import annotations

from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from cache.backends.watch import MasterWatch


class StandIn:
    """Answers SENTINEL GET-MASTER-ADDR-BY-NAME with `answer`; None: it is down."""

    def __init__(self, answer: tuple[str, int] | None) -> None:
        self.answer = answer

    async def execute_command(self, *args: Any) -> Any:
        assert args[:2] == ("SENTINEL", "GET-MASTER-ADDR-BY-NAME")
        if self.answer is None:
            raise RedisConnectionError("down")
        host, port = self.answer
        return [host.encode(), str(port).encode()]

    async def aclose(self) -> None:
        return None


OLD, NEW = ("127.0.0.1", 6379), ("127.0.0.1", 6380)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def watch_of(clock: Clock, *answers: tuple[str, int] | None) -> tuple[MasterWatch, list[StandIn]]:
    sentinels = [StandIn(a) for a in answers]
    return MasterWatch(sentinels, "vajra", fresh_for=1.0, clock=clock), sentinels  # type: ignore[arg-type]


async def test_a_master_named_by_every_sentinel_is_confirmed_until_the_answer_is_old(
    clock: Clock,
) -> None:
    watch, _ = watch_of(clock, OLD, OLD, OLD)
    assert watch.current() is None  # never asked
    await watch.poll()
    assert (watch.master, watch.current()) == (OLD, 1)
    clock.now += 0.99
    assert watch.current() == 1
    clock.now += 0.01
    assert watch.current() is None  # a second old: not trusted any more
    await watch.poll()
    assert watch.current() == 1  # the same master: the same term


async def test_sentinels_that_disagree_confirm_nothing(clock: Clock) -> None:
    watch, sentinels = watch_of(clock, OLD, OLD, OLD)
    await watch.poll()
    sentinels[0].answer = NEW  # the leader of a failover, ahead of the others
    clock.now += 1.0
    await watch.poll()
    assert watch.current() is None
    assert watch.master == OLD


async def test_a_new_master_needs_a_majority_and_moves_the_term(clock: Clock) -> None:
    watch, sentinels = watch_of(clock, OLD, OLD, OLD)
    await watch.poll()
    sentinels[0].answer, sentinels[1].answer, sentinels[2].answer = NEW, None, None
    await watch.poll()
    assert watch.master == OLD  # one Sentinel of three is not a majority
    sentinels[1].answer = NEW
    clock.now += 0.5
    await watch.poll()
    assert (watch.master, watch.current()) == (NEW, 2)  # two of three, the third one down
    assert watch.settled_at() == clock.now + 1.0  # other processes trust OLD until then


async def test_no_sentinel_answering_confirms_nothing(clock: Clock) -> None:
    watch, _ = watch_of(clock, None, None, None)
    await watch.poll()
    assert watch.current() is None
    assert watch.master is None
