"""The watch over the ranks, on a real TCP store with the ranks as threads: a silent rank is lost,
one that left early is lost at once, one that finished or is merely slow never is."""

from __future__ import annotations

import atexit
import time
from datetime import timedelta

import pytest

from anomalib_folder_ext.distributed.liveness import Lost, Watch, lost_after_s


class Recorded(Watch):
    """A watch that records the lost rank instead of ending the process."""

    def _end(self, lost: Lost) -> None:
        self.lost = lost


STARTED: list[Recorded] = []


@pytest.fixture
def store():
    from torch.distributed import TCPStore

    yield TCPStore("127.0.0.1", 0, is_master=True, timeout=timedelta(seconds=5), wait_for_workers=False)
    while STARTED:  # the test's ranks stop; the process's exit has nothing to tell them
        rank = STARTED.pop()
        rank.done.set()
        atexit.unregister(rank._at_exit)


def watch(store, rank: int, world_size: int = 3) -> Recorded:
    made = Recorded(store, rank, world_size, ranks_per_node=1, speaks=True, rerun="the same command",
                    lost_after=0.8, beat_s=0.05)
    STARTED.append(made)
    return made


def wait_for(condition, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)
    return condition()


def test_a_rank_that_stops_beating_is_lost_and_one_that_finished_is_not(store):
    zero, one, two = watch(store, 0), watch(store, 1), watch(store, 2)
    for rank in (zero, one, two):
        rank.start()
    two.finish()  # its part is done: it stops beating, and that is fine
    time.sleep(1.2)
    assert zero.lost is None and one.lost is None  # every live rank beats; rank 2 said it finished
    one.done.set()  # rank 1 goes silent without saying it finished: killed, or its machine lost
    assert wait_for(lambda: zero.lost is not None)
    assert (zero.lost.rank, zero.lost.node) == (1, 1) and "stopped answering" in zero.lost.how
    line = zero.lost.line("the same command")
    assert line.startswith("error: rank 1 (node 1) stopped answering") and "run the same command on every node" in line


def test_a_rank_that_left_before_finishing_is_lost_at_once(store):
    zero, one = watch(store, 0, 2), watch(store, 1, 2)
    zero.start()
    one.start()
    started = time.monotonic()
    one._at_exit()  # the process ends without having finished its part (an error of its own)
    assert wait_for(lambda: zero.lost is not None)
    assert time.monotonic() - started < 0.8  # no need to wait for silence
    assert zero.lost.rank == 1 and "ended before its part of the job was done" in zero.lost.how


def test_a_slow_rank_is_never_lost(store):
    zero, slow = watch(store, 0, 2), watch(store, 1, 2)
    zero.start()
    slow.start()
    busy_until = time.monotonic() + 2.0  # this process works flat out for longer than lost_after
    while time.monotonic() < busy_until:
        sum(range(10_000))
    assert zero.lost is None and slow.lost is None


def test_the_silence_allowed_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv("ANOMALIB_FOLDER_LOST_AFTER", raising=False)
    assert lost_after_s() == 60
    monkeypatch.setenv("ANOMALIB_FOLDER_LOST_AFTER", "300")
    assert lost_after_s() == 300
    monkeypatch.setenv("ANOMALIB_FOLDER_LOST_AFTER", "1")
    assert lost_after_s() == 10  # at least two beats
