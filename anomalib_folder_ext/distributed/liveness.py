"""Noticing a rank that is gone: every rank beats, every rank watches the others.

DDP's collectives wait for every rank. A rank whose process is killed, runs out of memory or
loses its machine never arrives: gloo raises "Connection closed by peer" once the peer's sockets
close (and waits out its 30-minute timeout for a machine that vanished without closing them),
NCCL waits for its timeout. A timeout also cannot tell a lost rank from a slow one.

So each rank's background thread counts up its own key in the job's rendezvous store (the TCP
store that rank 0, or torchrun's agent on node 0, holds for the process group) every
:data:`BEAT_S` seconds, and reads the others' counts. A rank whose count has not moved for
``lost_after`` seconds (measured on the reader's own clock: the machines' clocks need not agree),
or that ended before its part of the job was done, is lost. The job then ends on every rank with
one line naming the lost rank and what to run next; what finished is journaled, so the same
command resumes. A slow rank is never taken for a lost one: its thread beats while it works.

Every rank says :func:`finished` once it needs no other rank any more; rank 0, whose process
holds the store, stays until every rank has said it (or is lost), so no rank takes the end of a
finished job for rank 0's loss.
"""

from __future__ import annotations

import _thread
import atexit
import os
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from anomalib_folder_ext.distributed.ranks import distributed, node_of, ranks_per_node, speaks_for_node
from anomalib_folder_ext.errors import EXIT_RANK_LOST, InputError, RankLost

BEAT_S = 5.0
LOST_AFTER_S = 60.0  # default; ANOMALIB_FOLDER_LOST_AFTER=<seconds> to change it
LOST_AFTER_ENV = "ANOMALIB_FOLDER_LOST_AFTER"
# How a process stuck in a collective is ended once its rank's job is lost: a command's edge sets it
# (os._exit with status 4, :mod:`anomalib_folder_ext.cli.edge`); without one, the main thread is only
# interrupted, and the caller's process is never ended by the library.
hard_stop: Callable[[int], None] | None = None
GRACE_S = 10.0  # for the main thread to end by itself once a rank is lost (its collective failed), then it is made to


@dataclass(frozen=True)
class Lost:
    """A rank the job lost, and how it was noticed."""

    rank: int
    node: int
    how: str
    left: bool = False  # it ended (with an error of its own) rather than fell silent

    def line(self, rerun: str) -> str:
        return (f"error: rank {self.rank} (node {self.node}) {self.how}; the job stops here. Every image finished so "
                f"far is recorded: run {rerun} on every node to finish the job")


def lost_after_s() -> float:
    """The silence after which a rank counts as lost: :data:`LOST_AFTER_S`, or the environment's."""
    text = os.environ.get(LOST_AFTER_ENV, "")
    try:
        value = float(text) if text else LOST_AFTER_S
    except ValueError:
        value = LOST_AFTER_S
    return max(value, 2 * BEAT_S)


def silent_for(seen: dict[int, tuple[int, float]], counts: dict[int, int], now: float) -> dict[int, float]:
    """Each rank's silence in seconds: how long its count has stayed as it is. Updates ``seen``
    (rank -> (count, when it last changed)) with ``counts`` read at ``now``.

    >>> seen = {1: (3, 100.0)}
    >>> silent_for(seen, {1: 3}, 130.0), silent_for(seen, {1: 4}, 131.0)
    ({1: 30.0}, {1: 0.0})
    """
    silence = {}
    for rank, count in counts.items():
        if rank not in seen or seen[rank][0] != count:
            seen[rank] = (count, now)
        silence[rank] = now - seen[rank][1]
    return silence


class Watch:
    """This rank's beat and its watch over the others, on one daemon thread."""

    def __init__(self, store: object, rank: int, world_size: int, ranks_per_node: int, speaks: bool,
                 rerun: str, lost_after: float, beat_s: float = BEAT_S) -> None:
        self.store, self.rank, self.world_size, self.ranks_per_node = store, rank, world_size, ranks_per_node
        self.speaks, self.rerun, self.lost_after, self.beat_s = speaks, rerun, lost_after, beat_s
        self.lost: Lost | None = None
        self.done = threading.Event()
        self._decided = threading.Event()
        self.handled = threading.Event()  # the main thread took up the job's end (:func:`rank_lost_error`)
        self._said = threading.Lock()
        self._spoken = False
        self._thread = threading.Thread(target=self._run, name="anomalib_folder_ext.distributed.liveness", daemon=True)

    def start(self) -> None:
        self._beat()
        self._thread.start()
        atexit.register(self._at_exit)

    def _beat(self) -> None:
        self.store.add(f"beat/{self.rank}", 1)

    def _run(self) -> None:
        seen: dict[int, tuple[int, float]] = {}
        finished: set[int] = set()
        others = [rank for rank in range(self.world_size) if rank != self.rank]
        while not self.done.wait(self.beat_s):
            try:
                self._beat()
                lost = self._check(others, finished, seen)
            except Exception:  # noqa: BLE001 - the store is gone: its holder's process with it
                lost = Lost(0, 0, "is gone, and with it the job's rendezvous store (it holds it)")
            if lost is not None and not self.done.is_set():
                self._end(lost)
                return

    def _check(self, others: list[int], finished: set[int], seen: dict[int, tuple[int, float]]) -> Lost | None:
        counts = {}
        for rank in others:
            if rank in finished:
                continue
            if self.store.add(f"done/{rank}", 0):
                finished.add(rank)
            elif self.store.add(f"left/{rank}", 0):
                return Lost(rank, node_of(rank, self.ranks_per_node), "ended before its part of the job was done (its console says why)",
                            left=True)
            else:
                counts[rank] = self.store.add(f"beat/{rank}", 0)
        for rank, silence in silent_for(seen, counts, time.monotonic()).items():
            if silence > self.lost_after:
                return Lost(rank, node_of(rank, self.ranks_per_node), f"stopped answering {silence:.0f} s ago (its process or machine is gone)")
        return None

    def _end(self, lost: Lost) -> None:
        """Say it, give the main thread a moment (its own collective may be failing now), then stop
        it: a KeyboardInterrupt where it runs Python, the process itself where it waits in a collective.

        A silent rank is said at once (before a launcher ends this process for a sibling's exit); a
        rank that left said its own error, and this one is then often ending with the same error:
        it is said only if this process is still there after the moment.
        """
        self.lost = lost
        self._decided.set()
        if lost.left:
            time.sleep(GRACE_S)  # its end often fails this rank's collective too: that error then ends it
        self.say()
        # A main thread waiting for the verdict (its collective failed) takes it up by itself. Another is
        # interrupted, which it notices only between two Python steps: one waiting in a collective (a
        # stopped rank's peers keep their sockets open) never does, and is stopped after a moment; one
        # that took the job's end up is finishing its queued writes, and is given longer.
        handling = self.handled.wait(BEAT_S)
        if not handling:
            _thread.interrupt_main()
            handling = self.handled.wait(GRACE_S)
        if handling:
            time.sleep(3 * GRACE_S)
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        if hard_stop is not None:
            hard_stop(EXIT_RANK_LOST)

    def say(self) -> None:
        """The lost rank's line, once per process, on the ranks that speak for their node."""
        with self._said:
            if self._spoken or self.lost is None:
                return
            self._spoken = True
        if self.speaks:
            print(self.lost.line(self.rerun), file=sys.stderr, flush=True)

    def verdict(self, wait: float) -> Lost | None:
        self._decided.wait(wait)
        return self.lost

    def finish(self) -> None:
        """This rank needs no other rank any more: it stops beating and watching."""
        if not self.done.is_set():
            self.done.set()
            try:
                self.store.add(f"done/{self.rank}", 1)
            except Exception:  # noqa: BLE001, S110 - the job is over; nobody is left to tell
                pass

    def _at_exit(self) -> None:
        if self.lost is not None:
            return
        if not self.done.is_set():  # leaving before its part was done: the others stop rather than wait
            self.done.set()
            try:
                self.store.add(f"left/{self.rank}", 1)
            except Exception:  # noqa: BLE001, S110
                pass
            return
        if self.rank == 0:  # the store lives in this process: it stays until every rank has finished
            deadline = time.monotonic() + self.lost_after
            while time.monotonic() < deadline:
                try:
                    if all(self.store.add(f"done/{rank}", 0) or self.store.add(f"left/{rank}", 0)
                           for rank in range(1, self.world_size)):
                        return
                except Exception:  # noqa: BLE001
                    return
                time.sleep(0.2)


_WATCH: Watch | None = None


def watch(strategy: object, rerun: str) -> None:
    """Start this rank's watch (once per process) when the job has more than one rank.

    ``rerun``: what the line of a lost rank tells the user to run, e.g. "the same command".
    """
    global _WATCH  # noqa: PLW0603 - one watch per process
    if _WATCH is not None or not distributed(strategy):
        return
    import torch.distributed as dist
    from torch.distributed import PrefixStore, TCPStore

    lost_after = lost_after_s()
    environment = strategy.cluster_environment
    try:
        client = TCPStore(environment.main_address, environment.main_port, is_master=False,
                          timeout=timedelta(seconds=lost_after), wait_for_workers=False)
    except Exception as exc:  # noqa: BLE001 - the job runs on; only its watch is missing
        if dist.get_rank() == 0:
            print(f"warning: the ranks are not watched, so a lost rank may go unnoticed: the rendezvous store at "
                  f"{environment.main_address}:{environment.main_port} refused a second connection ({exc})",
                  file=sys.stderr, flush=True)
        return
    attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
    store = PrefixStore(f"anomalib_folder_ext/liveness/{attempt}/", client)
    _WATCH = Watch(store, dist.get_rank(), dist.get_world_size(), ranks_per_node(strategy),
                   speaks=speaks_for_node(strategy), rerun=rerun, lost_after=lost_after)
    _WATCH.start()


def finished() -> None:
    """This rank's part of the job is done (see the module doc)."""
    if _WATCH is not None:
        _WATCH.finish()


def lost_rank(exc: BaseException | None = None) -> Lost | None:
    """The rank the job lost, if one was: at once when it is known, else, for a failure of a
    collective (``exc``), after waiting for the watch to find which rank it was. A user's input
    error is this rank's own reason to stop, said as it is."""
    if _WATCH is None or isinstance(exc, InputError):
        return None
    if _WATCH.lost is not None or exc is None or not _collective_failure(exc):
        return _WATCH.lost
    return _WATCH.verdict(_WATCH.lost_after + 2 * BEAT_S)


def rank_lost_error(exc: BaseException | None = None) -> RankLost | None:
    """:class:`RankLost` when the job lost a rank (:func:`lost_rank`), its line said once on this node."""
    lost = lost_rank(exc)
    if lost is None:
        return None
    _WATCH.handled.set()
    _WATCH.say()
    error = RankLost(lost.line(_WATCH.rerun).removeprefix("error: "))
    error.quiet = True  # the watch said it
    return error


def _collective_failure(exc: BaseException) -> bool:
    import torch.distributed as dist

    text = str(exc)
    return isinstance(exc, getattr(dist, "DistError", ())) or any(
        words in text for words in ("gloo", "Gloo", "NCCL", "Connection closed by peer", "Connection reset by peer",
                                    "Broken pipe", "Socket Timeout")
    )
