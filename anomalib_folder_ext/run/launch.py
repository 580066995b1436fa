"""Handing a one-folder config to anomalib's own CLI and Engine (many folders in one process:
:mod:`~anomalib_folder_ext.run.batches`). The command line and the Python front door both come here,
so the two run the same config the same way; neither ends a process (a command's edge does)."""

from __future__ import annotations

from collections.abc import Sequence

from anomalib_folder_ext.errors import Terms
from anomalib_folder_ext.outputs.result import FolderResult
from anomalib_folder_ext.run.anomalibcli import anomalib_cli, predict_arguments, the_writer


def run_anomalib(args: Sequence[str], terms: Terms) -> FolderResult | None:
    """One ``anomalib predict`` run of ``args``, as anomalib's CLI runs its subcommand; the writer's result.

    ``terms``: how the caller spells the options its messages name.
    """
    cli = anomalib_cli(args)
    writer = the_writer(cli)
    if writer is not None:
        writer.configure(terms=terms)
    cli.engine.predict(**predict_arguments(cli))
    return writer.result if writer is not None else None
