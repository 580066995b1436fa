"""What a run prints: a progress bar, warnings that ask for action, and one last line on rank 0.

anomalib and Lightning talk a lot on start-up (every anomalib INFO line twice, once through
``logging`` and once through rich, hardware notices, a cloud-logging tip, deprecations of their
own dependencies). None of it asks the user to do anything, so by default it is kept out;
``anomalib-folder --verbose`` or ``ANOMALIB_FOLDER_VERBOSE=1`` (for ``anomalib predict``) shows it
all again. Warnings and errors of those loggers still show.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

VERBOSE_ENV = "ANOMALIB_FOLDER_VERBOSE"
# Set by ``anomalib-folder`` to the subcommand it runs, so a message names the flag that works there.
COMMAND_ENV = "ANOMALIB_FOLDER_COMMAND"
EXIT_NONE_SUCCEEDED = 3  # every image failed: a distinct exit status, after results.csv says why
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report it; what finished is journaled

# Loggers whose INFO lines are start-up chatter for our users (anomalib's model/engine set-up,
# Lightning's "GPU available", "Restoring states from the checkpoint", its logger tip).
_CHATTY_LOGGERS = ("anomalib", "lightning.pytorch", "lightning.fabric", "lightning", "lightning_fabric", "lightning_utilities")

# Warnings from dependencies about their own internals: nothing a user of this tool can act on.
_NOISE = (
    (FutureWarning, r"Importing from timm\.models\.layers is deprecated"),
    (FutureWarning, r"The anomalib\.models\.components\.dinov2 package is deprecated"),
    (Warning, r".*isinstance\(treespec, LeafSpec\)` is deprecated"),
    # A trained checkpoint remembers its ModelCheckpoint's folder; predicting never saves one.
    (Warning, r"The dirpath has changed from"),
    (Warning, r".*`weights_only` was not set"),
)


def verbose() -> bool:
    return os.environ.get(VERBOSE_ENV, "").strip().lower() not in {"", "0", "false", "no", "off"}


def quiet_dependencies() -> None:
    """Keep anomalib's and Lightning's start-up chatter off the console (idempotent); nothing when verbose."""
    if verbose():
        return
    for category, pattern in _NOISE:
        warnings.filterwarnings("ignore", message=pattern, category=category)
    for name in _CHATTY_LOGGERS:
        logger = logging.getLogger(name)
        if logger.getEffectiveLevel() < logging.WARNING:
            logger.setLevel(logging.WARNING)
    _one_root_handler()


@contextmanager
def quiet_training() -> Iterator[None]:
    """The demo's short fit without anomalib's and Lightning's notes about a fit (no logger, metrics
    logged per step, modules in eval mode, the demo folder's dotted path taken for hidden files),
    which its user cannot act on; the progress bars stay. Nothing changes when verbose."""
    if verbose():
        yield
        return
    quiet_dependencies()
    anomalib_logger = logging.getLogger("anomalib")
    level = anomalib_logger.level
    anomalib_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        anomalib_logger.setLevel(level)


def quiet_under_cli() -> None:
    """For the classes ``anomalib predict`` instantiates from a config: quiet a CLI run only, never
    the logging of a script or notebook that builds them itself."""
    if "anomalib.cli.cli" in sys.modules:
        quiet_dependencies()


def _one_root_handler() -> None:
    """anomalib's ``configure_logger`` gives the root logger a plain handler and a rich one, so every
    record prints twice; keep the rich one."""
    root = logging.getLogger()
    rich = [handler for handler in root.handlers if type(handler).__name__ == "RichHandler"]
    if rich:
        for handler in list(root.handlers):
            if type(handler) is logging.StreamHandler:
                root.removeHandler(handler)


def option_hint(name: str) -> str:
    """How to turn the writer's option ``name`` on in the command that is running.

    ``anomalib-folder`` has its own flags; under ``anomalib predict`` the writer is the last
    callback of the shipped configs, so its options are ``--trainer.callbacks.init_args.*``.

    Example:
        >>> os.environ.pop(COMMAND_ENV, None) and None
        >>> option_hint("overwrite")
        '--trainer.callbacks.init_args.overwrite true'
    """
    command = os.environ.get(COMMAND_ENV)
    if command == "batches":
        return {"overwrite": "--resume False", "resume": "the same command (resume is on by default)"}.get(
            name, f"--{name} True")
    if command:
        return f"--{name} True"
    return f"--trainer.callbacks.init_args.{name} true"


def say(line: str, error: bool = False) -> None:
    """One line for the user (the caller decides it is rank 0)."""
    print(line, file=sys.stderr if error else sys.stdout, flush=True)


def count(number: int) -> str:
    """``10,000``: counts of images are read at a glance."""
    return f"{number:,}"


def report_failures(images: int, failed: int, csv_path: str, first_failure: str = "") -> int:
    """The warning (some images failed) or the error (none succeeded) of a finished run; its exit status."""
    if images and failed == images:
        reason = f" (first: {first_failure})" if first_failure else ""
        say(f"error: none of the {count(images)} images could be predicted{reason}; {csv_path} lists each", error=True)
        return EXIT_NONE_SUCCEEDED
    if failed:
        say(f"warning: {count(failed)} of {count(images)} images failed; the status and error columns of "
            f"{csv_path} say why", error=True)
    return 0
