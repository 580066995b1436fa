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


class RanksDisagree(DecidedOnRankZero):
    """The ranks were started with settings that would put two inputs or two models in one run."""


def agreed_on_every_rank(strategy: object, settings: dict[str, object]) -> None:
    """Refuse, on every rank at once, a job whose ranks do not share every setting that decides a row.

    Each node runs its own command: two nodes told different folders, output dirs, checkpoints or
    batch sizes would each run, and one ``results.csv`` would mix them. Every rank gathers every
    rank's ``settings`` (plain values) and finds the same first difference, so all end together
    with the same line.
    """
    if not distributed(strategy):
        return
    import torch.distributed as dist

    views: list[dict | None] = [None] * dist.get_world_size()
    dist.all_gather_object(views, settings)
    found = disagreement(views, ranks_per_node(strategy))
    if found is not None:
        name, holders = found
        msg = (f"the nodes disagree on {name} ({holders}); every node runs the same command, naming the same "
               "folders, model and settings")
        raise RanksDisagree(msg, quiet=not speaks_for_node(strategy), option=name)


def disagreement(views: list[dict], ranks_per_node: int) -> tuple[str, str] | None:
    """The first setting the ranks' ``views`` differ on, and each value with the nodes (or ranks) holding it.

    >>> disagreement([{"folder_path": "/a", "batch_size": 8}, {"folder_path": "/b", "batch_size": 8}], 1)
    ('folder_path', "'/a' on node 0; '/b' on node 1")
    >>> disagreement([{"batch_size": 8}] * 4, 2) is None
    True
    """
    names = list(dict.fromkeys(name for view in views for name in view))
    for name in names:
        values = [view.get(name) for view in views]
        if all(value == values[0] for value in values):
            continue
        holders: dict[str, list[int]] = {}
        for rank, value in enumerate(values):
            holders.setdefault(_shown(value), []).append(rank)
        return name, "; ".join(f"{value} on {_who(ranks, ranks_per_node, len(views))}"
                               for value, ranks in holders.items())
    return None


def _who(ranks: list[int], ranks_per_node: int, world_size: int) -> str:
    """``ranks`` named by their nodes where they are whole nodes, else by rank."""
    nodes = sorted({node_of(rank, ranks_per_node) for rank in ranks})
    if len(ranks) == sum(1 for rank in range(world_size) if node_of(rank, ranks_per_node) in nodes):
        return f"node{'s' if len(nodes) > 1 else ''} {', '.join(map(str, nodes))}"
    return f"rank{'s' if len(ranks) > 1 else ''} {', '.join(map(str, ranks))}"


def _shown(value: object) -> str:
    """A setting's value for the line: a content digest by its first 12 digits."""
    if isinstance(value, str) and len(value) >= 40 and all(char in "0123456789abcdef" for char in value):
        return f"content {value[:12]}…"
    return repr(value)


def ranks_per_node(strategy: object) -> int:
    """How many ranks each node runs (the process group must be up)."""
    import torch.distributed as dist

    return max(dist.get_world_size() // max(getattr(strategy, "num_nodes", 1), 1), 1)


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
