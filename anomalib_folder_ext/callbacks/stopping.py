"""How a failed run ends: the typed error it raises, in its caller's terms. Nothing here ends a process:
a command's edge (:mod:`anomalib_folder_ext.cli.edge`) says the line and decides the exit status."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

from lightning.pytorch import Trainer

from anomalib_folder_ext.console import count, ctrl_c_pending
from anomalib_folder_ext.distributed import liveness
from anomalib_folder_ext.distributed.ranks import DecidedOnRankZero
from anomalib_folder_ext.errors import InputError, RunInterrupted, Terms, option_hint


def stopping_error(exception: BaseException, trainer: Trainer, done: int, output_dir: Path | None,
                   terms: Terms) -> BaseException | None:
    """The error to raise instead of ``exception``; ``None``: it goes on as it is (a bug keeps Lightning's
    own ending; an input error only learns the caller's terms and which rank found it)."""
    lost = liveness.rank_lost_error(exception)  # a rank is gone: that is why, whatever failed here
    if lost is not None:
        return lost
    # Ctrl-C in a terminal reaches the DataLoader workers too: one that ends first fails the run with its own
    # error ("worker exited unexpectedly"), and this process's KeyboardInterrupt may come later or not at all
    interrupted = ctrl_c_pending(clear=True) and not isinstance(exception, InputError)
    if (isinstance(exception, KeyboardInterrupt) or interrupted) and not isinstance(exception, RunInterrupted):
        if trainer.is_global_zero:
            message = (f"interrupted: {count(done)} images finished and recorded in {output_dir}; "
                       f"run it again with {option_hint('resume')} to predict only the rest")
        else:  # Ctrl-C on another node's terminal: that node says why it ends; its first rank speaks for it
            message = (f"interrupted on node {trainer.node_rank} (rank {trainer.global_rank}): the images it finished "
                       f"are recorded in {output_dir}; run the job again on every node with "
                       f"{option_hint('resume')} to predict only the rest")
        error = RunInterrupted(message, terms=terms)
        error.quiet = not (trainer.is_global_zero or trainer.local_rank == 0)
        _take_ctrl_c_again()
        return error  # raised from the hook: Lightning would end the process with status 1 instead
    if isinstance(exception, InputError):
        # Said by each rank that fails (a rank that ends without a word has Lightning end the others,
        # rank 0 before it could speak); rank 0's refusal reaches every rank, each node's first says it.
        exception.terms = terms
        if not (trainer.is_global_zero or isinstance(exception, DecidedOnRankZero)):
            exception.said_by_rank = trainer.global_rank
    return None


def _take_ctrl_c_again() -> None:
    """Lightning ignores SIGINT from the first Ctrl-C on, for its shutdown; a script or notebook that
    goes on after the run wants its Ctrl-C back."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
