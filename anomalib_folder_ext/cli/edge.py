"""A command's edge: the one place an error becomes one line and an exit status.

``anomalib-folder`` ends here (:func:`stop_for`); so does plain ``anomalib predict``, whose CLI builds
our classes from a config and has no edge of ours: for it, :func:`install_excepthook` wraps
``sys.excepthook`` when those classes are made (never at import), because rich's traceback handler,
which anomalib installs, would turn a missing folder into a screen of frames. A bug keeps its
traceback; ``ANOMALIB_FOLDER_TRACEBACK=1`` shows one for input errors too.
"""

from __future__ import annotations

import atexit
import os
import re
import sys

from anomalib_folder_ext.distributed.meeting import meeting_failure, say_while_waiting
from anomalib_folder_ext.errors import InputError, Terms, Worded, input_error_in

TRACEBACK_ENV = "ANOMALIB_FOLDER_TRACEBACK"


def one_line_message(exc: BaseException, terms: Terms | None = None) -> str | None:
    """The one-line message for errors a user fixes by changing input; ``None`` for real bugs."""
    error = input_error_in(exc)
    if error is not None:
        return (terms or error.terms).render(error.template)
    met = meeting_failure(exc)
    if met is not None:
        return met
    text = str(exc)
    # Lightning's own words for the two checkpoint mistakes it catches after our checks.
    if isinstance(exc, FileNotFoundError) and text.startswith("Checkpoint file not found"):
        return f"ckpt_path: {text}"
    if isinstance(exc, RuntimeError) and "Error(s) in loading state_dict for EfficientAd" in text:
        found = state_dict_problem(text)
        if terms is not None and terms.name.startswith("anomalib-folder"):  # the settings came from the checkpoint
            return (f"model_path: the checkpoint's weights do not fit the EfficientAd its own settings describe "
                    f"({found}): the file is incomplete or was edited; nothing was predicted")
        return (
            f"ckpt_path: the checkpoint's weights do not fit the configured EfficientAd ({found}); set model.init_args "
            "model_size / teacher_out_channels / padding as it was trained, or run anomalib-folder predict, "
            "which reads them from the checkpoint"
        )
    return None


def state_dict_problem(text: str) -> str:
    """torch's list of keys that did not load, by network (``Missing key(s) in state_dict: "a", ...``).

    Example:
        >>> state_dict_problem('Missing key(s) in state_dict: "model.ae.x", "model.ae.y". size mismatch for model.student.w: ...')
        'missing model.ae (2 tensors); of another shape: model.student (1 tensor)'
    """
    from anomalib_folder_ext.models.checkpoint import by_network

    parts = []
    for kind, keys in re.findall(r'(Missing|Unexpected) key\(s\) in state_dict: ((?:"[^"]+"(?:, )?)+)', text):
        names = re.findall(r'"([^"]+)"', keys)
        parts.append(f"{kind.lower()} {by_network(names)}")
    reshaped = re.findall(r"size mismatch for ([\w.]+):", text)
    if reshaped:
        parts.append(f"of another shape: {by_network(reshaped)}")
    return "; ".join(parts) or "see the checkpoint's keys"


def stop_for(exc: BaseException, terms: Terms | None = None, input_errors: bool = True) -> int | None:
    """Say in one line why the run stops (unless it was said already); the exit status. ``None``: a bug,
    which keeps its traceback. ``input_errors`` False: input errors keep theirs too. ``terms``: how
    this command spells the options its messages name."""
    error = exc if isinstance(exc, Worded) and not isinstance(exc, InputError) else None
    error = error or (input_error_in(exc) if input_errors else None)
    if error is not None:
        if not error.quiet:  # rank 0's refusal is said by each node's first rank; a lost rank by the watch
            rank = f"rank {error.said_by_rank}: " if getattr(error, "said_by_rank", None) else ""
            print(f"{error.lead}{rank}{(terms or error.terms).render(error.template)}", file=sys.stderr, flush=True)
        return error.exit_status
    message = one_line_message(exc, terms) if input_errors else None
    if message is None:
        return None
    print(f"error: {message}", file=sys.stderr, flush=True)
    return InputError.exit_status


def _one_line_hook(previous, terms: Terms):  # noqa: ANN001, ANN202
    def hook(exc_type, exc, tb):  # noqa: ANN001, ANN202
        tracebacks = bool(os.environ.get(TRACEBACK_ENV))
        status = stop_for(exc, terms, input_errors=not tracebacks)
        if status is not None and not (tracebacks and status == 1):
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


def install_excepthook(terms: Terms) -> None:
    """Wrap the current ``sys.excepthook`` once (idempotent), and let the watch over the ranks end a
    process stuck in a collective (:mod:`~anomalib_folder_ext.distributed.liveness`)."""
    from anomalib_folder_ext.distributed import liveness

    liveness.hard_stop = os._exit
    say_while_waiting()  # a node that cannot reach node 0 would wait its 30 minutes in silence
    if not getattr(sys.excepthook, "anomalib_folder_ext", False):
        sys.excepthook = _one_line_hook(sys.excepthook, terms)
