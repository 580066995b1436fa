"""Bad input: one clear line naming the file and the problem, a non-zero exit, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import REPO, run_cli, run_here, write_images

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("errors")
    write_images(root / "images", {"a.png": ((64, 64), "PNG")})
    (root / "empty").mkdir()
    (root / "empty" / "readme.txt").write_text("no images here")
    (root / "text.ckpt").write_text("this is not a checkpoint")
    (root / "a_file").write_text("")
    (root / "random.ckpt").write_bytes(bytes(range(256)) * 40)
    (root / "empty.ckpt").write_bytes(b"")
    return root


@pytest.fixture(scope="module")
def other_model_checkpoint(tmp_path_factory) -> Path:
    """A genuine Lightning checkpoint of a model that is not EfficientAd."""
    import torch
    from lightning.pytorch import LightningModule, Trainer

    class Tiny(LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(2, 2)

    path = tmp_path_factory.mktemp("other") / "tiny.ckpt"
    trainer = Trainer(logger=False, enable_checkpointing=False, accelerator="cpu", default_root_dir=path.parent)
    trainer.strategy.connect(Tiny())
    trainer.save_checkpoint(path)
    return path


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])  # bad input, whichever command
    assert "Traceback" not in result.stderr and "╭" not in result.stderr, result.stderr[-2000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(("error:", "anomalib-folder: error:")), result.stderr[-2000:]
    for fragment in fragments:
        assert fragment in last, last


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["--model_path", "{root}/missing.ckpt", "--folder_path", "{root}/images"], ["missing.ckpt", "no such file"]),
        (["--model_path", "{root}/text.ckpt", "--folder_path", "{root}/images"], ["text.ckpt", "not a PyTorch checkpoint"]),
        (["--model_path", "{other}", "--folder_path", "{root}/images"], ["tiny.ckpt", "not an EfficientAd checkpoint"]),
        (["--model_path", "{ckpt}", "--folder_path", "{root}/missing"], ["missing", "no such folder"]),
        (["--model_path", "{ckpt}", "--batch_folder", "batch_09", "--data_root", "{root}"], ["batch_09", "no such folder"]),
        (["--model_path", "{ckpt}", "--folder_path", "{root}/empty"],
         ["empty", "no images found", "png, jpg, jpeg, bmp, tif, tiff"]),
        (["--model_path", "{ckpt}", "--folder_path", "{root}/images", "--output_dir", "{root}/a_file/out"],
         ["a_file/out", "cannot be created"]),
        (["--model_path", "{ckpt}", "--folder_path", "{root}/images", "--image_size", "128", "128"],
         ["--image_size 128 128", "256 256"]),
        (["--model_path", "{ckpt}", "--folder_path", "{root}/images", "--output_dir", "{root}/images"],
         ["images is the input folder"]),
        (["--model_path", "{ckpt}", "--folder_path", "{root}/images", "--colormap", "nope"], ["unknown colormap 'nope'"]),
        (["--model_path", "{ckpt}", "--folder_path", "{root}/images", "--batch_size", "0"], ["--batch_size", "at least 1"]),
        (["--model_path", "{ckpt}", "--folder_path", "{root}/images", "--num_workers", "-1"], ["--num_workers", "at least 0"]),
    ],
    ids=["missing-ckpt", "not-a-ckpt", "not-efficientad", "missing-folder", "missing-batch-folder", "no-images",
         "unwritable-output", "image-size-mismatch", "output-is-input", "colormap", "batch-size", "num-workers"],
)
def test_anomalib_folder_errors(args, fragments, inputs, checkpoint, other_model_checkpoint, tmp_path):
    """Found before anomalib starts, so checked in this process (the command's own main)."""
    subst = {"root": inputs, "ckpt": checkpoint, "other": other_model_checkpoint}
    result = run_here(["anomalib-folder", "predict", *(a.format(**subst) for a in args)], tmp_path)
    assert_one_line_error(result, *fragments)
    assert not list(tmp_path.iterdir()), "a failed check must not leave files behind"


def test_the_command_says_a_preflight_error_in_one_line_too(inputs, checkpoint, tmp_path):
    """The same check through the installed command, as a user runs it."""
    result = run_cli(["anomalib-folder", "predict", "--model_path", str(checkpoint), "--folder_path",
                      str(inputs / "missing")], cwd=tmp_path)
    assert_one_line_error(result, "missing", "no such folder")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("override", "fragments"),
    [
        (["--data.init_args.folder_path", "{root}/missing"], ["folder_path", "missing: no such folder"]),
        (["--data.init_args.folder_path", "{root}/empty"], ["empty", "no images found"]),
        (["--data.init_args.output_dir", "{root}/a_file/out"], ["a_file/out", "cannot be created"]),
        (["--ckpt_path", "{root}/missing.ckpt"], ["missing.ckpt", "no such file"]),
        (["--model.init_args.model_size", "medium"], ["do not fit the configured EfficientAd"]),
        (["--ckpt_path", "{root}/random.ckpt"], ["random.ckpt", "not a PyTorch checkpoint"]),
        (["--ckpt_path", "{root}/empty.ckpt"], ["empty.ckpt", "not a PyTorch checkpoint"]),
        (["--data.init_args.batch_size", "0"], ["batch_size 0", "at least 1"]),
        (["--trainer.callbacks.init_args.colormap", "nope"], ["unknown colormap 'nope'"]),
        (["--data.init_args.output_dir", "{root}/images"], ["images is the input folder"]),
    ],
    ids=["missing-folder", "no-images", "unwritable-output", "missing-ckpt", "wrong-architecture", "random-ckpt",
         "empty-ckpt", "batch-size", "colormap", "output-is-input"],
)
def test_anomalib_predict_errors_stay_one_line(override, fragments, inputs, checkpoint, tmp_path):
    """Under `anomalib predict` too: one line, before the weights load, and no output dir left behind
    (in this process; the PNG-only clash below goes through the installed command)."""
    args = ["anomalib", "predict", "--config", str(REPO / "configs/folder.yaml"), "--ckpt_path", str(checkpoint),
            "--data.init_args.folder_path", str(inputs / "images")]
    result = run_here(args + [a.format(root=inputs) for a in override], cwd=tmp_path)
    assert_one_line_error(result, *fragments)
    assert not (tmp_path / "inference_results_images").exists(), "a failed run must leave no output dir"


def test_a_failed_write_stops_the_run_in_one_line_and_keeps_the_finished_maps(checkpoint, tmp_path):
    """The write pool's error reaches the user (one line, exit 2); maps already computed are still
    written; no summary. The last image's map name is longer than a file name may be."""
    folder = tmp_path / "in"
    names = [f"{letter}.png" for letter in "abcde"]
    too_long = "z" * 246 + ".png"  # a legal name; its map's name, z..z_anomaly.npy, is 258 bytes
    write_images(folder, {**{name: ((64, 64), "PNG") for name in names}, too_long: ((64, 64), "PNG")})
    output_dir = tmp_path / "out"
    result = run_here(
        ["anomalib-folder", "predict", "--model_path", str(checkpoint), "--folder_path", str(folder),
         "--output_dir", str(output_dir), "--batch_size", "2", "--save_as_image", "False"],
        cwd=tmp_path,
    )
    assert result.returncode == 2
    assert_one_line_error(result, str(output_dir / f"{'z' * 246}_anomaly.npy"), "cannot write (File name too long)")
    assert sorted(p.name for p in output_dir.glob("*.npy")) == [f"{letter}_anomaly.npy" for letter in "abcde"]
    assert not (output_dir / "results.csv").exists() and not list(output_dir.glob(".*.tmp"))


def test_names_that_are_not_utf8_or_hold_a_newline_get_their_rows_and_summaries(checkpoint, tmp_path):
    """A name from a Windows share (bytes that are not UTF-8) and one with a newline: every map and
    both summaries are written; the text files stay valid UTF-8, one line per image, and the npy/png
    columns name the files exactly."""
    import csv
    import os

    import numpy as np

    folder = tmp_path / "odd"
    write_images(folder, {"plain.png": ((64, 64), "PNG")})
    source = (folder / "plain.png").read_bytes()
    (Path(os.fsdecode(bytes(folder) + b"/caf\xe9.png"))).write_bytes(source)
    (folder / "two\nlines.png").write_bytes(source)
    result = run_here(["anomalib", "predict", "--config", str(REPO / "configs/folder.yaml"), "--ckpt_path", str(checkpoint),
                       "--data.init_args.folder_path", str(folder), "--data.init_args.output_dir", "out"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    out = tmp_path / "out"
    text = (out / "results.csv").read_bytes().decode("utf-8")  # valid UTF-8
    rows = list(csv.DictReader(text.splitlines()))
    assert sorted(row["image"] for row in rows) == ["caf\\xe9.png", "plain.png", "two\\nlines.png"]
    for row in rows:
        assert row["status"] == "ok" and np.load(out / row["npy"]).shape == (256, 256) and (out / row["png"]).is_file()
    summary = (out / "results_summary.txt").read_bytes().decode("utf-8")
    assert sum("caf\\xe9.png" in line for line in summary.splitlines()) >= 2  # top list and table, each one line
    assert "two\\nlines.png" in summary and "\ntwo" not in summary.replace("\\n", "")


def _png_only_clash(root: Path) -> Path:
    """An input named like the PNG map another input gets when the output dir holds the input folder."""
    folder = root / "scans"
    write_images(folder, {"scans/x.png": ((64, 64), "PNG"), "x_anomaly.png": ((64, 64), "PNG")})
    return folder


def test_a_png_only_clash_with_an_input_is_refused_before_the_model_loads(checkpoint, tmp_path):
    """Both entry points check the output dir with the names of every file kind the run writes."""
    folder = _png_only_clash(tmp_path)
    before = sorted(path.relative_to(tmp_path) for path in tmp_path.rglob("*"))
    result = run_here(["anomalib-folder", "predict", "--model_path", str(checkpoint), "--folder_path", str(folder),
                       "--output_dir", str(tmp_path), "--recursive", "True", "--save_as_npy", "False"], tmp_path)
    assert_one_line_error(result, "scans/x_anomaly.png would replace the input image")
    result = run_cli(["anomalib", "predict", "--config", str(REPO / "configs/folder.yaml"),
                      "--config", str(REPO / "callbacks/png_only.yaml"), "--ckpt_path", str(checkpoint),
                      "--data.init_args.folder_path", str(folder), "--data.init_args.recursive", "true",
                      "--data.init_args.output_dir", str(tmp_path)], cwd=tmp_path)
    assert_one_line_error(result, "scans/x_anomaly.png would replace the input image")
    assert sorted(path.relative_to(tmp_path) for path in tmp_path.rglob("*")) == before
