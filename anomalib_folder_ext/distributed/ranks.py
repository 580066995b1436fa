"""Decisions every rank must agree on, made once, on rank 0, and sent to the others.

Under DDP every rank runs the same command. Decisions read from files (which images a folder
holds, whether its output dir may be used, what resume keeps, which folders are finished) could
come out differently on two ranks: a shared filesystem whose views lag, or rank 0 deleting an
earlier run's files while another rank reads them. Two ranks that decide differently end in a
collective one of them never reaches, and the job hangs. So rank 0 alone reads and decides, and
:func:`decided_on_rank_zero` hands its answer (or its refusal) to every rank through the
strategy's ``broadcast``; the broadcast is also the point where the other ranks wait for rank 0's
writes and deletions.

Example:
    >>> from lightning.pytorch.strategies import SingleDeviceStrategy
    >>> decided_on_rank_zero(SingleDeviceStrategy("cpu"), lambda: ["a.png", "b.png"])  # one process: just runs it
    ['a.png', 'b.png']
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from anomalib_folder_ext.errors import InputError, RankZeroFailed

T = TypeVar("T")


class DecidedOnRankZero(InputError):
    """Rank 0's refusal, raised on every other rank too; ``quiet`` on ranks that should not repeat it."""

    def __init__(self, message: str, quiet: bool, option: str | None = None) -> None:
        super().__init__(message, option=option)
        self.quiet = quiet


def distributed(strategy: object) -> bool:
    """Whether ``strategy``'s process group is up (a broadcast reaches other ranks)."""
    import torch.distributed as dist

    return strategy is not None and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def decided_on_rank_zero(strategy: object, decide: Callable[[], T]) -> T:
    """``decide()`` on rank 0, its result on every rank; rank 0's :class:`InputError` is raised on all.

    Without a process group (one process) ``decide`` simply runs. Any other failure on rank 0 is
    raised there as it is; the other ranks raise :class:`RankZeroFailed` (a command ends them with
    status 1, without a traceback of their own).
    """
    if not distributed(strategy):
        return decide()
    outcome: tuple[str, object] | None = None
    failure: BaseException | None = None
    if strategy.global_rank == 0:
        try:
            outcome = ("ok", decide())
        except InputError as exc:  # its message unrendered: each rank says it in its caller's terms
            outcome, failure = ("refused", (exc.template, exc.option)), exc
        except BaseException as exc:
            outcome, failure = ("failed", f"{type(exc).__name__}: {exc}"), exc
    outcome = strategy.broadcast(outcome, src=0)
    if failure is not None:
        raise failure
    kind, value = outcome
    if kind == "refused":
        raise DecidedOnRankZero(value[0], quiet=not speaks_for_node(strategy), option=value[1])
    if kind == "failed":
        raise RankZeroFailed(f"rank 0 failed: {value}")  # rank 0 shows the traceback
    return value


def speaks_for_node(strategy: object) -> bool:
    """Whether this rank says rank 0's decisions on its machine's console: each node's first rank does."""
    return getattr(strategy, "local_rank", 0) == 0


def node_of(rank: int, ranks_per_node: int) -> int:
    """The node (machine) a global rank runs on: Lightning numbers ranks node by node.

    >>> [node_of(rank, 2) for rank in range(4)]
    [0, 0, 1, 1]
    """
    return rank // max(ranks_per_node, 1)


def start_ranks(trainer: object) -> None:
    """Start the other ranks and join the process group now, as ``Trainer.predict`` would at its start.

    A multi-folder run decides which folders to run before its first ``Trainer.predict``; the
    other ranks must be there to receive the decisions. Lightning's launcher starts them the same
    way it would later (re-running this command, or not at all under torchrun / SLURM), and the
    predict calls after this find the ranks running and the process group joined. Strategies that
    start ranks another way (``ddp_spawn``) keep their own start.
    """
    # Lightning has no public name for the launcher that starts ranks by re-running the command; only
    # under it are there ranks to start here (torchrun, SLURM and ddp_spawn start their own).
    from lightning.pytorch.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

    strategy = trainer.strategy
    if trainer.num_nodes * trainer.num_devices <= 1 or not isinstance(getattr(strategy, "launcher", None),
                                                                        _SubprocessScriptLauncher):
        return
    strategy.launcher.launch(strategy.setup_environment)  # it sets LOCAL_RANK: later launches start no one
