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
import signal
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from anomalib_folder_ext.errors import ANOMALIB_PREDICT, WRITER, NoImagePredicted, Terms

VERBOSE_ENV = "ANOMALIB_FOLDER_VERBOSE"

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


def quiet_torch_logs() -> None:
    """torch's C++ warnings off the console, set before torch loads (its level is read then): a node whose
    job ended while it was stopped would print a page of C++ stack frames about the closed store,
    after the line that says what happened. ``TORCH_CPP_LOG_LEVEL`` set by the user wins; nothing when verbose."""
    if not verbose() and "torch" not in sys.modules:
        os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")  # also for the DDP ranks this command starts


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
def quieted(quiet: bool = True) -> Iterator[None]:
    """anomalib's and Lightning's chatter kept out while a Python call runs, and the caller's logging
    levels and warning filters as they were afterwards (nothing changes when not ``quiet`` or verbose)."""
    if not quiet or verbose():
        yield
        return
    levels = {name: logging.getLogger(name).level for name in _CHATTY_LOGGERS}
    with warnings.catch_warnings():
        quiet_dependencies()
        try:
            yield
        finally:
            for name, level in levels.items():
                logging.getLogger(name).setLevel(level)


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


def _plain_anomalib_cli() -> bool:
    """Whether plain ``anomalib predict`` is building our classes, not ``anomalib-folder``, the Python front
    door or a script. anomalib tells the classes it instantiates nothing of who asked, so the process is
    asked: it is the ``anomalib`` command (its console script, also in each DDP rank it starts) and that
    command's CLI is loaded. A notebook that once ran anomalib's CLI in-process is not."""
    return Path(sys.argv[0] if sys.argv else "").name == "anomalib" and "anomalib.cli.cli" in sys.modules


def caller_terms() -> Terms:
    """How the messages of a writer made now name its options: as ``anomalib predict``'s flags, or (a script's
    own ``AnomalyMapWriter``) as Python arguments; our launchers then say their caller's (``configure``)."""
    return ANOMALIB_PREDICT if _plain_anomalib_cli() else WRITER


def at_anomalib_cli_edge() -> None:
    """For the classes ``anomalib predict`` instantiates from a config: quiet its console and make its
    edge ours (one line and an exit status for our errors); never for a script or a notebook that
    builds them itself, nor under ``anomalib-folder`` (it has its edge)."""
    if _plain_anomalib_cli():
        quiet_dependencies()
        # The one import up the stages: plain `anomalib predict` reaches the edge we give it from here.
        from anomalib_folder_ext.cli.edge import install_excepthook

        install_excepthook(ANOMALIB_PREDICT)
        catch_ctrl_c()


def _one_root_handler() -> None:
    """anomalib's ``configure_logger`` gives the root logger a plain handler and a rich one, so every
    record prints twice; keep the rich one."""
    root = logging.getLogger()
    rich = [handler for handler in root.handlers if type(handler).__name__ == "RichHandler"]
    if rich:
        for handler in list(root.handlers):
            if type(handler) is logging.StreamHandler:
                root.removeHandler(handler)


def say(line: str, error: bool = False) -> None:
    """One line for the user (the caller decides it is rank 0)."""
    print(line, file=sys.stderr if error else sys.stdout, flush=True)


def count(number: int) -> str:
    """``10,000``: counts of images are read at a glance."""
    return f"{number:,}"


def duration(seconds: float) -> str:
    """``0:12:58``.

    >>> duration(778.4), duration(5)
    ('0:12:58', '0:00:05')
    """
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def images_per_s(rate: float) -> str:
    """``120 images/s``, ``4.20 images/s``: two figures where a few matter.

    >>> images_per_s(123.4), images_per_s(4.2)
    ('123 images/s', '4.20 images/s')
    """
    return f"{rate:.0f} images/s" if rate >= 10 else f"{rate:.2f} images/s"


def shown_dir(directory: os.PathLike) -> str:
    """``out/`` relative to where the user is, or absolute when it lies elsewhere."""
    relative = os.path.relpath(directory)
    return f"{Path(directory).resolve() if relative.startswith('..') else relative}/"


def counted(number: int, noun: str) -> str:
    """``1 batch folder``, ``3 batch folders``.

    Example:
        >>> counted(1, "batch folder"), counted(10000, "image")
        ('1 batch folder', '10,000 images')
    """
    return f"{count(number)} {noun}{'' if number == 1 else 's'}"


def check_failures(images: int, failed: int, csv_path: str, first_failure: str = "") -> None:
    """A finished run's warning (some images failed), or :class:`NoImagePredicted` (none succeeded)."""
    if images and failed == images:
        reason = f" (first: {first_failure})" if first_failure else ""
        raise NoImagePredicted(f"none of the {count(images)} images could be predicted{reason}; {csv_path} lists each")
    if failed:
        say(f"warning: {count(failed)} of {count(images)} images failed; the status and error columns of "
            f"{csv_path} say why", error=True)


_CTRL_C = threading.Event()


def _on_ctrl_c(signum: int, frame: object) -> None:
    _CTRL_C.set()
    raise KeyboardInterrupt


def catch_ctrl_c() -> None:
    """A command's Ctrl-C remembered as well as raised: Python drops a KeyboardInterrupt raised while an
    at-fork hook or a finalizer runs (a DataLoader worker starting at a folder's start, say), and the run
    would go on as if none came; the writer raises it again at its next batch (:func:`ctrl_c_pending`).
    Only where Python's own handler is in place, in the main thread. The traceback Python prints as it
    drops one ("Exception ignored in ...") is left out: the Ctrl-C is not lost, and the run says so."""
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, _on_ctrl_c)
        if not getattr(sys.unraisablehook, "anomalib_folder_ext", False):
            sys.unraisablehook = _unsaid_when_dropped(sys.unraisablehook)


def _unsaid_when_dropped(previous):  # noqa: ANN001, ANN202
    def hook(unraisable):  # noqa: ANN001, ANN202
        if not (isinstance(unraisable.exc_value, KeyboardInterrupt) and _CTRL_C.is_set()):
            previous(unraisable)

    hook.anomalib_folder_ext = True
    return hook


def ctrl_c_pending(clear: bool = False) -> bool:
    """Whether a Ctrl-C came since the last one was taken up (``clear``: it is taken up now)."""
    pending = _CTRL_C.is_set()
    if clear:
        _CTRL_C.clear()
    return pending


def raise_dropped_ctrl_c() -> None:
    """``KeyboardInterrupt`` again when a Ctrl-C came and nothing took it up (Python dropped it)."""
    if _CTRL_C.is_set():
        raise KeyboardInterrupt

