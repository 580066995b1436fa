"""anomalib's CLI objects for a config: made as ``anomalib predict`` makes them, run as it runs them."""

from __future__ import annotations

from collections.abc import Sequence

from anomalib_folder_ext.errors import InputError


def anomalib_cli(args: Sequence[str]):  # noqa: ANN201
    """anomalib's CLI objects for ``args`` (model, datamodule, Engine), instantiated, not run yet."""
    from anomalib.cli.cli import AnomalibCLI

    return AnomalibCLI(list(args), run=False)


def the_writer(cli: object, required: bool = False):  # noqa: ANN201
    """The config's :class:`~anomalib_folder_ext.callbacks.AnomalyMapWriter` (``None`` without one)."""
    from anomalib_folder_ext.callbacks.writer import AnomalyMapWriter

    callbacks = cli.config_init.predict.trainer.callbacks or []
    writers = [callback for callback in callbacks if isinstance(callback, AnomalyMapWriter)]
    if required and len(writers) != 1:
        msg = "a multi-folder run needs exactly one anomalib_folder_ext.callbacks.AnomalyMapWriter in trainer.callbacks"
        raise InputError(msg)
    return writers[0] if writers else None


def predict_arguments(cli: object) -> dict:
    """``Engine.predict``'s arguments from the parsed config, as anomalib's CLI hands them over."""
    arguments = {key: value for key, value in cli.config_init.predict.items()
                 if key in cli.subcommand_method_arguments["predict"]}
    arguments["model"] = cli.model
    if cli.datamodule is not None:
        arguments["datamodule"] = cli.datamodule
    return arguments
