"""Handing a run to anomalib's own CLI, set up as the ``anomalib`` command sets itself up: one folder
(``AnomalibCLI``), or many in one process (:mod:`~anomalib_folder_ext.run.batches`)."""

from __future__ import annotations


def prepare_anomalib() -> None:
    """What the ``anomalib`` command sets up before it runs: its logging, and our one-line errors.

    The console is quieted first, so the warnings anomalib's own imports raise stay out too.
    """
    from anomalib_folder_ext.console import quiet_dependencies
    from anomalib_folder_ext.errors import install_excepthook

    quiet_dependencies()
    install_excepthook()  # Ctrl-C during the imports: one line
    import anomalib.cli.cli  # noqa: F401 - installs rich's traceback hook over ours
    from anomalib.loggers import configure_logger

    install_excepthook()  # wrap rich's again: input errors raised during the run stay one line
    configure_logger()
    quiet_dependencies()  # configure_logger doubled the root handlers and reset levels


def run_anomalib(args: list[str]) -> None:
    """Hand over to anomalib's own CLI, configured as the ``anomalib`` command does."""
    prepare_anomalib()
    from anomalib.cli.cli import AnomalibCLI

    AnomalibCLI(args)


def run_batch_folders(base: list[str], jobs: list, output_root: str, resume: bool, overwrite: bool = False) -> int:
    """Many folders through anomalib's CLI and Engine in this one process (:mod:`anomalib_folder_ext.run.batches`)."""
    prepare_anomalib()
    from anomalib_folder_ext.run.batches import run_batches

    return run_batches(base, jobs, output_root, resume, overwrite)


def one_line_errors(run, *args) -> int:  # noqa: ANN001
    """Run anomalib; an input error found once it started (a checkpoint that does not fit, a folder's
    override, a full disk) is one ``error:`` line and exit status 2, like the checks before it."""
    from anomalib_folder_ext.errors import said_in_one_line

    try:
        status = run(*args)
    except Exception as exc:
        said = said_in_one_line(exc)
        if said is None:
            raise
        return said
    return status or 0

