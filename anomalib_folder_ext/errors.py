"""The errors a run raises, each with the exit status a command ends with and a message in the caller's terms.

The library raises; only a command's edge (:mod:`anomalib_folder_ext.cli.edge`) prints one line and
decides an exit status. A message names the way out as the caller spells it: ``--overwrite True``
for ``anomalib-folder predict``, ``--trainer.callbacks.init_args.overwrite true`` under ``anomalib
predict``, ``AnomalyMapWriter(overwrite=True)`` in a script. Messages are written with a
placeholder per option (:func:`option_hint`) and rendered with the :class:`Terms` of the run that
raised them.

Example:
    >>> error = OutputDirError(f"output_dir out holds an earlier run; to replace it: {option_hint('overwrite')}")
    >>> str(error)
    'output_dir out holds an earlier run; to replace it: AnomalyMapWriter(overwrite=True)'
    >>> error.terms = ANOMALIB_PREDICT
    >>> str(error), error.option, error.exit_status
    ('output_dir out holds an earlier run; to replace it: --trainer.callbacks.init_args.overwrite true', 'output_dir', 2)
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

EXIT_INPUT_ERROR = 2  # bad input, as argparse reports a usage error
EXIT_NONE_SUCCEEDED = 3  # every image failed: a distinct exit status, after results.csv says why
EXIT_RANK_LOST = 4  # a rank of the job was lost; what finished is kept
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report it; what finished is journaled

_PLACEHOLDER = re.compile(r"\{option:(\w+)\}")


@dataclass(frozen=True)
class Terms:
    """How the caller turns a writer option on: a command's flag, a config key or a Python argument."""

    name: str
    spell: Callable[[str], str]

    def render(self, text: str) -> str:
        return _PLACEHOLDER.sub(lambda match: self.spell(match.group(1)), text)


def option_hint(name: str) -> str:
    """The placeholder for "turn option ``name`` on", spelled when the message is shown."""
    return f"{{option:{name}}}"


WRITER = Terms("AnomalyMapWriter", lambda name: f"AnomalyMapWriter({name}=True)")
ANOMALIB_PREDICT = Terms("anomalib predict", lambda name: f"--trainer.callbacks.init_args.{name} true")
PREDICT_COMMAND = Terms("anomalib-folder predict", lambda name: f"--{name} True")
BATCHES_COMMAND = Terms("anomalib-folder batches", lambda name: {
    "overwrite": "--resume False", "resume": "the same command (resume is on by default)"}.get(name, f"--{name} True"))
CALIBRATE_COMMAND = Terms("anomalib-folder calibrate", lambda name: {
    "overwrite": "--resume False", "resume": "the same command (resume is on by default)"}.get(name, f"--{name} True"))
WATCH_COMMAND = Terms("anomalib-folder watch", lambda name: {
    "resume": "the same command (a watch resumes its output dir)"}.get(name, f"--{name} True"))
WATCH_FUNCTION = Terms("watch_folder", lambda name: {
    "resume": "watch_folder again (a watch resumes its output dir)"}.get(name, f"watch_folder(..., {name}=True)"))
PREDICT_FOLDER = Terms("predict_folder", lambda name: f"predict_folder(..., {name}=True)")
PREDICT_BATCHES = Terms("predict_batches", lambda name: {
    "overwrite": "predict_batches(..., resume=False)",
    "resume": "predict_batches again (resume is on by default)"}.get(name, f"predict_batches(..., {name}=True)"))
CALIBRATE_FUNCTION = Terms("calibrate", lambda name: {
    "overwrite": "calibrate(..., resume=False)",
    "resume": "calibrate again (resume is on by default)"}.get(name, f"calibrate(..., {name}=True)"))


class Worded(BaseException):
    """A message written once, shown in the caller's terms; the exit status a command ends with.

    The base of every error of ours (an :class:`InputError` is also a ``ValueError``, a :class:`RunInterrupted`
    a ``KeyboardInterrupt``), so ``except Worded`` catches them all and nothing else."""

    exit_status = 1
    option: str | None = None  # the option the message is about, where there is one
    quiet = False  # said already (by rank 0's node, by the watch over the ranks): the edge stays silent
    lead = "error: "  # how the edge's line starts

    def __init__(self, message: str = "", *, option: str | None = None, terms: Terms | None = None) -> None:
        super().__init__(message)
        self.template = message
        self.terms = terms or WRITER
        if option is not None:
            self.option = option

    def __str__(self) -> str:
        return self.terms.render(self.template)


class InputError(Worded, ValueError):
    """Bad input (folder, checkpoint, output dir, settings); the message names it and the problem.

    Errors are remembered: jsonargparse reports an error raised while it instantiates a class of
    the config inside its own ``ValueError`` (with the whole config dumped); the edge finds ours
    in it and says just that (:func:`input_error_in`).
    """

    exit_status = EXIT_INPUT_ERROR
    raised: list[InputError] = []  # noqa: RUF012 - process-wide on purpose
    said_by_rank: int | None = None  # a rank other than 0 that found it on its own: the line names it

    def __init__(self, message: str = "", *, option: str | None = None, terms: Terms | None = None) -> None:
        super().__init__(message, option=option, terms=terms)
        InputError.raised.append(self)
        del InputError.raised[:-20]

    def prefixed(self, prefix: str) -> InputError:
        """The same error, its message after ``prefix`` (where it was found: a folder, an override file)."""
        return type(self)(f"{prefix}{self.template}", option=self.option, terms=self.terms)


class FolderInputError(InputError):
    """The input folder cannot be used."""

    option = "folder_path"


class OutputDirError(InputError):
    """The output dir cannot be used, created or written; the message names it."""

    option = "output_dir"


class ExportedModelError(InputError):
    """An exported model that cannot run here; the message names the file and the problem."""

    option = "model_path"


class CalibrationError(InputError):
    """A calibration or threshold that cannot decide this run's parts: not a calibration file, made for
    another model, runtime, precision or image size, or a threshold that is not a finite number."""

    option = "calibration"


class NoImagePredicted(Worded, RuntimeError):
    """No image of the folder (or of any batch folder) could be predicted; ``results.csv`` lists each and why.

    ``result``: what the run recorded, where the caller can read it (a result of :mod:`anomalib_folder_ext.api`).
    """

    exit_status = EXIT_NONE_SUCCEEDED
    result: object = None


class RankLost(Worded, RuntimeError):
    """A rank of a multi-GPU or multi-machine job is gone; every image finished so far is recorded."""

    exit_status = EXIT_RANK_LOST


class RankZeroFailed(Worded, RuntimeError):
    """Rank 0 failed with an error of its own (a bug); rank 0 shows its traceback, the other ranks stop."""

    quiet = True


class RunInterrupted(Worded, KeyboardInterrupt):
    """Ctrl-C: what finished is recorded, and a resumed run predicts only the rest."""

    exit_status = EXIT_INTERRUPTED
    lead = ""  # the message starts with "interrupted:"


def input_error_in(exc: BaseException) -> InputError | None:
    """Our input error, when ``exc`` is one or wraps one (jsonargparse's error while it instantiates a class)."""
    if isinstance(exc, InputError):
        return exc
    if isinstance(exc, ValueError):
        text = str(exc)
        wrapped = [error for error in InputError.raised if error.template and str(error) in text]
        if wrapped:
            return wrapped[-1]
    return None
