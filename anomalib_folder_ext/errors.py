"""Errors a user can fix, shown as one line instead of a traceback.

``anomalib predict`` installs rich's traceback handler, which turns a missing folder into a
screen of frames. For our own input errors the message already names the file and the problem,
so an uncaught one is printed as a single line; every other exception keeps the previous hook.
Set ``ANOMALIB_FOLDER_TRACEBACK=1`` to see full tracebacks anyway.

Every such error exits with status 2, whichever command raised it and whenever: the hook cannot
set the status Python exits with, so it ends the process itself, after the exit handlers ran.
"""

from __future__ import annotations

import atexit
import os
import sys

EXIT_INPUT_ERROR = 2  # bad input, as argparse reports a usage error


class InputError(ValueError):
    """Bad input (folder, checkpoint, output dir, settings); the message names it and the problem.

    Messages are remembered: jsonargparse reports an error raised while it instantiates a class
    of the config inside its own ``ValueError`` (with the whole config dumped); the hook below
    finds ours in it and prints just that.
    """

    raised: list[str] = []  # noqa: RUF012 - process-wide on purpose

    def __init__(self, *args: object) -> None:
        super().__init__(*args)
        InputError.raised.append(str(self))
        del InputError.raised[:-20]


class FolderInputError(InputError):
    """The input folder cannot be used."""


class OutputDirError(InputError):
    """The output dir cannot be used, created or written; the message names it."""


class ExportedModelError(InputError):
    """An exported model that cannot run here; the message names the file and the problem."""


def one_line_message(exc: BaseException) -> str | None:
    """The one-line message for errors a user fixes by changing input; ``None`` for real bugs."""
    if isinstance(exc, InputError):
        return str(exc)
    text = str(exc)
    if isinstance(exc, ValueError):
        wrapped = [message for message in InputError.raised if message and message in text]
        if wrapped:
            return wrapped[-1]
    # Lightning's own words for the two checkpoint mistakes it catches after our checks.
    if isinstance(exc, FileNotFoundError) and text.startswith("Checkpoint file not found"):
        return f"ckpt_path: {text}"
    if isinstance(exc, RuntimeError) and "Error(s) in loading state_dict for EfficientAd" in text:
        return (
            "ckpt_path: the checkpoint's weights do not fit the configured EfficientAd; set model.init_args "
            "model_size / teacher_out_channels / padding as it was trained, or run anomalib-folder predict, "
            "which reads them from the checkpoint"
        )
    return None


def said_in_one_line(exc: BaseException, input_errors: bool = True) -> int | None:
    """Say in one line why the run stops, for a lost rank or (``input_errors``) a user's input
    error; the exit status. ``None``: neither (a bug keeps its traceback)."""
    # A rank of the job is gone: whatever failed here, that is why. (Its watch exists only where
    # the module was imported; importing it here would change how Python exits on Ctrl-C.)
    liveness = sys.modules.get("anomalib_folder_ext.distributed.liveness")
    if liveness is not None and liveness.lost_rank(exc) is not None:
        liveness.say_lost()
        return liveness.EXIT_RANK_LOST
    message = one_line_message(exc) if input_errors else None
    if message is None:
        return None
    if not getattr(exc, "quiet", False):  # rank 0's refusal: each node's first rank says it
        print(f"error: {message}", file=sys.stderr)
    return EXIT_INPUT_ERROR


def _one_line_hook(previous):  # noqa: ANN001, ANN202
    def hook(exc_type, exc, tb):  # noqa: ANN001, ANN202
        tracebacks = bool(os.environ.get("ANOMALIB_FOLDER_TRACEBACK"))
        status = said_in_one_line(exc, input_errors=not tracebacks)
        if status is not None:
            exit_now(status)
        elif issubclass(exc_type, KeyboardInterrupt) and not tracebacks:
            # In a predict loop the writer reports what finished itself; this is Ctrl-C outside one.
            print("interrupted: finished images are kept; run again with --resume True to continue", file=sys.stderr)
        else:
            previous(exc_type, exc, tb)

    hook.anomalib_folder_ext = True
    return hook


def exit_now(status: int) -> None:
    """End the process with ``status`` from an exception hook: flush, run the exit handlers, exit."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    atexit._run_exitfuncs()  # noqa: SLF001 - what a normal exit runs (DataLoader workers, temp dirs)
    os._exit(status)


def install_excepthook() -> None:
    """Wrap the current ``sys.excepthook`` once (idempotent)."""
    if not getattr(sys.excepthook, "anomalib_folder_ext", False):
        sys.excepthook = _one_line_hook(sys.excepthook)
