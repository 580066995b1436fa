"""YAML composition and the CLI translation, checked on the config anomalib itself resolves."""

from __future__ import annotations

import argparse

import pytest
import yaml

from conftest import REPO


def resolved_config(args: list[str], capsys) -> dict:
    """What `anomalib predict ... --print_config` prints, parsed (in-process: no model run)."""
    from anomalib.cli.cli import AnomalibCLI

    with pytest.raises(SystemExit) as exit_info:
        AnomalibCLI([*args, "--print_config"])
    assert exit_info.value.code in (0, None)
    return yaml.safe_load(capsys.readouterr().out)


def base(*extra: str) -> list[str]:
    return ["predict", "--config", str(REPO / "configs/folder.yaml"), *extra]


def writer_args(config: dict) -> dict:
    """The writer's settings; every shipped config and preset also keeps the ChannelsLast callback first."""
    channels_last, writer = config["trainer"]["callbacks"]
    assert channels_last["class_path"] == "anomalib_folder_ext.callbacks.ChannelsLast"
    assert writer["class_path"] == "anomalib_folder_ext.callbacks.AnomalyMapWriter"
    return writer["init_args"]


def test_base_config_is_complete(capsys):
    config = resolved_config(base("--ckpt_path", "m.ckpt", "--data.init_args.folder_path", "/data/batch_01"), capsys)
    assert config["model"]["class_path"] == "anomalib.models.EfficientAd"
    assert config["model"]["init_args"]["visualizer"] is False
    assert config["data"]["class_path"] == "anomalib_folder_ext.data.FolderDataModule"
    assert config["data"]["init_args"]["folder_path"] == "/data/batch_01"
    assert config["data"]["init_args"]["batch_size"] == 8 and config["data"]["init_args"]["image_size"] is None
    assert config["return_predictions"] is False and config["ckpt_path"] == "m.ckpt"
    assert writer_args(config)["save_as_npy"] is True and writer_args(config)["save_as_image"] is True


def test_batch_override_changes_folder_and_output_only(capsys):
    plain = resolved_config(base("--data.init_args.folder_path", "x"), capsys)
    batch = resolved_config(base("--config", str(REPO / "configs/batches/batch_01.yaml")), capsys)
    assert batch["data"]["init_args"]["folder_path"] == "data/batches/batch_01"
    assert batch["data"]["init_args"]["output_dir"] == "inference_results/batch_01"
    for section in ("model", "trainer"):
        assert batch[section] == plain[section]
    rest = {k: v for k, v in batch["data"]["init_args"].items() if k not in {"folder_path", "output_dir"}}
    assert rest == {k: v for k, v in plain["data"]["init_args"].items() if k not in {"folder_path", "output_dir"}}


@pytest.mark.parametrize(
    ("preset", "npy", "png"),
    [("npy_only.yaml", True, False), ("png_only.yaml", False, True), ("full.yaml", True, True)],
)
def test_callback_presets_compose_without_losing_other_settings(preset, npy, png, capsys):
    config = resolved_config(
        base("--trainer.callbacks.init_args.colormap", "viridis", "--config", str(REPO / "callbacks" / preset),
             "--data.init_args.folder_path", "x"),
        capsys,
    )
    writer = writer_args(config)
    assert (writer["save_as_npy"], writer["save_as_image"]) == (npy, png)
    assert writer["colormap"] == "viridis" and writer["png_compress_level"] == 1


def test_command_line_overrides_win_over_files(capsys):
    config = resolved_config(
        base("--config", str(REPO / "configs/batches/batch_01.yaml"), "--data.init_args.batch_size", "32",
             "--data.init_args.output_dir", "elsewhere", "--trainer.precision", "bf16-mixed"),
        capsys,
    )
    assert config["data"]["init_args"]["batch_size"] == 32
    assert config["data"]["init_args"]["output_dir"] == "elsewhere"
    assert config["trainer"]["precision"] == "bf16-mixed"


def test_anomalib_folder_translates_to_the_same_config(checkpoint, capsys):
    """No second pipeline: the old flags resolve to exactly the YAML route's config."""
    from anomalib_folder_ext.models.checkpoint import read_checkpoint
    from anomalib_folder_ext.cli.parser import build_parser
    from anomalib_folder_ext.run.translate import anomalib_predict_args, spec_from_flags

    options = build_parser().parse_args(
        ["predict", "--model_path", str(checkpoint), "--folder_path", "/data/batch_01", "--output_dir", "out",
         "--batch_size", "16", "--save_as_image", "False"]
    )
    assert isinstance(options, argparse.Namespace)
    from_flags = resolved_config(anomalib_predict_args(spec_from_flags(options), read_checkpoint(checkpoint)), capsys)
    from_yaml = resolved_config(
        base("--config", str(REPO / "callbacks/npy_only.yaml"), "--ckpt_path", str(checkpoint),
             "--data.init_args.folder_path", "/data/batch_01", "--data.init_args.output_dir", "out",
             "--data.init_args.batch_size", "16"),
        capsys,
    )
    from_flags.pop("config", None)
    from_yaml.pop("config", None)
    assert from_flags == from_yaml
