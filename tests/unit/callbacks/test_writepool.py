"""The writer's pool without Lightning: the caller never waits for a batch's jobs, except to make room."""

from __future__ import annotations

import threading
import time

import pytest

from anomalib_folder_ext.callbacks.writepool import BatchWritePool


def gated(value, gate: threading.Event, log: list):
    def job():
        assert gate.wait(10), "test gate never opened"
        log.append(value)
        return value

    return job


def test_submitting_does_not_wait_for_the_jobs():
    pool = BatchWritePool(workers=2, max_batches=2)
    gate, log = threading.Event(), []
    started = time.perf_counter()
    assert pool.submit([gated(1, gate, log), gated(2, gate, log)]) == []
    assert pool.submit([gated(3, gate, log)]) == []
    assert time.perf_counter() - started < 1 and log == []  # both batches queued, nothing done yet
    assert pool.batches_in_flight == 2
    gate.set()
    assert pool.drain() == [1, 2, 3]
    pool.close()


def test_a_full_pool_makes_the_caller_wait_for_the_oldest_batch_only():
    pool = BatchWritePool(workers=4, max_batches=2)
    first, second, log = threading.Event(), threading.Event(), []
    pool.submit([gated("a1", first, log), gated("a2", first, log)])
    pool.submit([gated("b1", second, log)])
    returned = []
    caller = threading.Thread(target=lambda: returned.append(pool.submit([lambda: "c1"])))
    caller.start()
    caller.join(0.3)
    assert caller.is_alive(), "a third batch went in while two were in flight"
    first.set()  # the oldest batch completes: room for one more; the second batch may still be running
    caller.join(5)
    assert not caller.is_alive() and returned == [["a1", "a2"]]
    assert pool.batches_in_flight == 2 and "b1" not in log
    second.set()
    assert pool.drain() == ["b1", "c1"]
    pool.close()


def test_results_keep_submission_order_whatever_order_jobs_finish_in():
    pool = BatchWritePool(workers=4, max_batches=3)
    for batch in range(5):
        # later jobs of a batch finish first
        pool.submit([lambda b=batch, i=i: (time.sleep(0.02 * (3 - i)), (b, i))[1] for i in range(3)])
    done = pool.drain()
    pool.close()
    assert done[-9:] == [(b, i) for b in range(2, 5) for i in range(3)]


def test_a_failed_job_is_raised_in_the_caller_and_the_other_jobs_still_run():
    pool = BatchWritePool(workers=2, max_batches=1)
    log = []

    def fail():
        raise OSError("out/x_anomaly.npy: cannot write (No space left on device)")

    pool.submit([fail, lambda: log.append("other") or "other"])
    with pytest.raises(OSError, match="x_anomaly.npy"):
        pool.submit([lambda: "next"])  # making room collects the failed batch
    pool.close()
    assert log == ["other"]


def test_abandon_waits_for_queued_jobs_and_swallows_their_errors():
    pool = BatchWritePool(workers=1, max_batches=4)
    log = []
    pool.submit([lambda: (time.sleep(0.1), log.append(1), "one")[2]])
    pool.submit([lambda: 1 / 0, lambda: (log.append(2), "two")[1]])
    assert pool.abandon() == ["one", "two"]  # what succeeded comes back: the writer journals it
    assert log == [1, 2] and pool.batches_in_flight == 0
    pool.close()


def test_collect_done_returns_finished_leading_batches_without_waiting():
    pool = BatchWritePool(workers=2, max_batches=4)
    gate, log = threading.Event(), []
    pool.submit([lambda: "a"])
    pool.submit([gated("b", gate, log)])
    pool.submit([lambda: "c"])
    deadline = time.perf_counter() + 5
    collected = []
    while not collected and time.perf_counter() < deadline:
        collected = pool.collect_done()
    assert collected == ["a"]  # "c" is done too, but waits behind the unfinished "b": order is kept
    assert pool.collect_done() == [] and pool.batches_in_flight == 2
    gate.set()
    assert pool.drain() == ["b", "c"]
    pool.close()
