"""A run's typed options: one list for the flags, the front door and the config, checked once."""

from __future__ import annotations

import inspect

import pytest

from anomalib_folder_ext.api import predict_batches, predict_folder, run_spec
from anomalib_folder_ext.cli.parser import build_parser
from anomalib_folder_ext.errors import FolderInputError, InputError
from anomalib_folder_ext.options import WriterOptions
from anomalib_folder_ext.run.spec import RunSpec, spec_defaults
from anomalib_folder_ext.run.translate import spec_from_flags, writer_init_args


def test_the_flags_and_the_front_door_make_the_same_spec():
    options = build_parser().parse_args(["predict", "--model_path", "m.ckpt", "--folder_path", "/data/batch_01",
                                         "--batch_size", "16", "--save_as_image", "False", "--devices", "2",
                                         "--normalization", "fixed", "--vmin", "0", "--vmax", "3"])
    options.resume = False
    from_flags = spec_from_flags(options)
    from_python = run_spec(model_path="m.ckpt", folder_path="/data/batch_01", batch_size=16, save_as_image=False,
                           devices=2, normalization="fixed", vmin=0.0, vmax=3.0)
    assert from_flags == from_python


def test_the_flags_take_their_defaults_from_the_spec():
    predict = next(action for action in build_parser()._subparsers._group_actions[0].choices["predict"]._actions  # noqa: SLF001
                   if action.dest == "batch_size")
    assert predict.default == spec_defaults()["batch_size"] == 8


def test_every_option_is_a_keyword_of_the_front_door():
    names = set(inspect.signature(predict_folder).parameters)
    assert {"batch_size", "devices", "precision", "normalization", "resume", "overwrite", "save_overlay"} <= names
    assert "folder_path" not in set(inspect.signature(predict_batches).parameters)
    assert inspect.signature(predict_folder).parameters["batch_size"].default == 8


def test_a_bad_option_is_refused_naming_it():
    with pytest.raises(InputError, match=r"batch_sise: no such option \(did you mean batch_size\?\)"):
        run_spec(batch_sise=4)
    with pytest.raises(FolderInputError, match="num_workers -1"):
        RunSpec(num_workers=-1)
    with pytest.raises(InputError, match="give a list"):
        RunSpec(extensions=".png")


def test_the_config_holds_the_flags_options_in_order_and_any_other_changed():
    assert list(writer_init_args(WriterOptions())) == [
        "save_as_npy", "save_as_image", "colormap", "normalization", "map_size", "save_overlay", "overlay_alpha",
        "calibration", "threshold", "pixel_threshold", "uncertain_below", "save_mask", "report", "resume", "overwrite",
        "allow_other_files"]
    changed = writer_init_args(WriterOptions(png_compress_level=6, normalization="fixed", vmin=0.0, vmax=1.0))
    assert changed["png_compress_level"] == 6 and (changed["vmin"], changed["vmax"]) == (0.0, 1.0)
    assert changed["normalization"] == "fixed"
