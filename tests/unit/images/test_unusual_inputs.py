"""Unusual inputs and output dirs, on the pure functions: decoding notes, the pixel limit, the
output dir's lock and guards, the one-line errors, the quiet console. No model, no subprocess of the CLI."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anomalib_folder_ext.outputs import outputdir
from anomalib_folder_ext.outputs.artifacts import OutputDirError, ensure_writable
from anomalib_folder_ext.outputs.owned import OwnedDir
from anomalib_folder_ext.data.datamodule import FolderImageDataset, decode_image
from anomalib_folder_ext.images.discover import list_folder_images
from anomalib_folder_ext.cli.edge import one_line_message, stop_for
from anomalib_folder_ext.errors import InputError
from anomalib_folder_ext.outputs.summary import ImageResult, csv_text, summary_text

RAMP16 = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)


# -- decoding: what changes on the way in is said, not hidden ---------------------------------------
@pytest.mark.parametrize("suffix", ["png", "tif"])
def test_16_bit_grey_is_scaled_to_8_bits_not_saturated(tmp_path, suffix):
    path = tmp_path / f"g16.{suffix}"
    Image.fromarray(RAMP16).save(path)
    pixels, notes = decode_image(path)
    assert pixels.dtype == np.uint8 and pixels.shape == (64, 64, 3)
    expected = np.rint(RAMP16 / 257.0).astype(np.uint8)
    assert np.array_equal(pixels[..., 0], expected) and np.array_equal(pixels[..., 2], expected)
    assert pixels.min() == 0 and pixels.max() == 255 and len(np.unique(pixels)) > 200  # a ramp, not white
    assert notes == ["16-bit scaled to 8"]


def test_alpha_pages_and_exif_orientation_are_noted(tmp_path):
    Image.new("RGBA", (32, 32), (10, 20, 30, 40)).save(tmp_path / "alpha.png")
    pages = [Image.new("RGB", (32, 32), (value, value, value)) for value in (50, 100, 150)]
    pages[0].save(tmp_path / "pages.tif", save_all=True, append_images=pages[1:])
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (32, 16), (200, 0, 0)).save(tmp_path / "rotated.jpg", exif=exif)
    Image.new("RGB", (32, 32), (1, 2, 3)).save(tmp_path / "plain.png")

    alpha, alpha_notes = decode_image(tmp_path / "alpha.png")
    assert alpha_notes == ["alpha dropped"] and alpha[0, 0].tolist() == [10, 20, 30]
    first, page_notes = decode_image(tmp_path / "pages.tif")
    assert page_notes == ["first of 3 pages"] and first[0, 0].tolist() == [50, 50, 50]
    rotated, exif_notes = decode_image(tmp_path / "rotated.jpg")
    assert exif_notes == ["EXIF orientation 6 not applied (pixels as stored)"] and rotated.shape[:2] == (16, 32)
    assert decode_image(tmp_path / "plain.png")[1] == []


def test_an_image_over_max_pixels_fails_with_its_size_before_decoding(tmp_path):
    Image.new("RGB", (400, 300)).save(tmp_path / "big.png")
    with pytest.raises(ValueError, match=r"400 x 300 = 120,000 pixels, more than max_pixels 100,000"):
        decode_image(tmp_path / "big.png", max_pixels=100_000)
    assert decode_image(tmp_path / "big.png", max_pixels=None)[0].shape == (300, 400, 3)


def test_dataset_rows_carry_notes_and_failures(tmp_path):
    Image.fromarray(RAMP16).save(tmp_path / "tiny16.png")
    Image.new("RGB", (400, 300)).save(tmp_path / "big.png")
    (tmp_path / "gone.png").symlink_to(tmp_path / "deleted.png")
    names = [Path(name) for name in list_folder_images(tmp_path)]
    assert [name.as_posix() for name in names] == ["big.png", "gone.png", "tiny16.png"]  # the dangling link is listed
    dataset = FolderImageDataset(tmp_path, names, (256, 256), max_pixels=100_000)
    big, gone, tiny = (dataset[index] for index in range(3))
    assert "more than max_pixels 100,000" in big.error and big.original_size == (0, 0)
    assert gone.error.startswith("dangling symlink: its target") and "deleted.png" in gone.error
    assert tiny.error == "" and tiny.note == "16-bit scaled to 8; upscaled from 64 x 64"
    batch = dataset.collate([big, gone, tiny])
    assert batch.note == ["16-bit scaled to 8; upscaled from 64 x 64"] and batch.relative_path == [tiny.relative_path]
    assert [failed.error for failed in batch.failed] == [big.error, gone.error]


def test_notes_are_a_csv_column_and_a_summary_section():
    rows = [ImageResult("a.png", note="alpha dropped", score=1.0), ImageResult("b.png", score=2.0)]
    header, first, second = csv_text(rows).splitlines()
    assert header.split(",")[:4] == ["image", "status", "error", "note"]
    assert first.split(",")[3] == "alpha dropped" and second.split(",")[3] == ""
    text = summary_text({}, rows)
    assert "Changed on the way in (1; the note column of results.csv)\n  a.png: alpha dropped" in text


# -- the output dir ---------------------------------------------------------------------------------
def test_the_input_folder_as_output_dir_is_refused(tmp_path):
    folder = tmp_path / "batch_01"
    folder.mkdir()
    problem = outputdir.replaced_input(folder, folder, ["part.png"], ["part_anomaly.npy"])
    assert problem and "is the input folder" in problem


def test_an_output_that_would_replace_an_input_is_found(tmp_path):
    folder = tmp_path / "out" / "scans"
    folder.mkdir(parents=True)
    # recursive run of out/scans written to out/: the map of "scans/x.png" is out/scans/x_anomaly.png
    problem = outputdir.replaced_input(tmp_path / "out", folder, ["x_anomaly.png"], ["scans/x_anomaly.png"])
    assert problem and "would replace the input image" in problem and "x_anomaly.png" in problem
    assert outputdir.replaced_input(tmp_path / "results", folder, ["x.png"], ["x_anomaly.png"]) is None


def _sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_a_live_lock_refuses_a_second_run_and_a_stale_one_is_taken_over(tmp_path):
    other = _sleeper()
    directory = OwnedDir(tmp_path)
    try:
        import socket

        (tmp_path / outputdir.LOCK_NAME).write_text(
            json.dumps({"token": "other run", "pid": other.pid, "host": socket.gethostname(), "since": "now"})
        )
        with pytest.raises(OutputDirError, match=rf"another run is writing there \(pid {other.pid} on"):
            outputdir.OutputDirLock(directory).acquire()
    finally:
        other.kill()
        other.wait()
    lock = outputdir.OutputDirLock(directory)
    lock.acquire()  # its process is gone: stale, taken over
    assert json.loads((tmp_path / outputdir.LOCK_NAME).read_text())["pid"] == os.getpid()
    lock.release()
    assert not (tmp_path / outputdir.LOCK_NAME).exists()


def test_the_early_writability_check_creates_nothing(tmp_path):
    ensure_writable(tmp_path / "a" / "b", create=False)
    assert not (tmp_path / "a").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputDirError, match="is a file"):
        ensure_writable(tmp_path / "file", create=False)


# -- errors and console -----------------------------------------------------------------------------
def test_an_input_error_wrapped_by_jsonargparse_is_still_one_line():
    try:
        raise InputError("batch_size 0: must be a whole number of at least 1")
    except InputError:
        pass
    wrapped = ValueError("Does not validate against any of the Union subtypes\nErrors:\n"
                         "  - batch_size 0: must be a whole number of at least 1\nGiven value: Namespace(...)")
    assert one_line_message(wrapped) == "batch_size 0: must be a whole number of at least 1"
    assert one_line_message(ValueError("Does not validate against any of the Union subtypes")) is None


def test_quiet_console_hides_dependency_chatter_but_not_warnings(monkeypatch):
    from anomalib_folder_ext import console

    monkeypatch.delenv(console.VERBOSE_ENV, raising=False)
    logger = logging.getLogger("lightning.pytorch")
    monkeypatch.setattr(logger, "level", logging.INFO)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        console.quiet_dependencies()
        warnings.warn("The dirpath has changed from 'a' to 'b'", UserWarning, stacklevel=1)
        warnings.warn("something a user should act on", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["something a user should act on"]
    assert not logger.isEnabledFor(logging.INFO) and logger.isEnabledFor(logging.WARNING)


def test_16_mixed_on_a_cpu_is_reported_as_what_ran_and_what_was_asked():
    from types import SimpleNamespace

    from jsonargparse import Namespace
    from lightning.pytorch.cli import SaveConfigCallback

    from anomalib_folder_ext.callbacks.runinfo import precision_text as _precision_text

    asked = SaveConfigCallback(parser=None, config=Namespace(trainer=Namespace(precision="16-mixed")))
    assert _precision_text(SimpleNamespace(precision="bf16-mixed", callbacks=[asked])) == (
        "bf16-mixed (asked for 16-mixed: Lightning has no float16 autocast on a CPU and runs bf16)"
    )
    same = SaveConfigCallback(parser=None, config=Namespace(trainer=Namespace(precision=32)))
    assert _precision_text(SimpleNamespace(precision="32-true", callbacks=[same])) == "32-true"
    assert _precision_text(SimpleNamespace(precision="32-true", callbacks=[])) == "32-true"  # no CLI: what ran


def test_the_outcome_lines_and_exit_status_shared_by_predict_and_batches(capsys):
    from anomalib_folder_ext.console import check_failures
    from anomalib_folder_ext.errors import EXIT_NONE_SUCCEEDED, PREDICT_COMMAND, NoImagePredicted

    check_failures(3, 0, "out/results.csv")
    assert capsys.readouterr().err == ""
    check_failures(3, 1, "out/results.csv")
    assert capsys.readouterr().err == "warning: 1 of 3 images failed; the status and error columns of out/results.csv say why\n"
    with pytest.raises(NoImagePredicted) as raised:  # the library raises; a command's edge says it and exits 3
        check_failures(2, 2, "all_batches.csv", "batch_01/x.png: broken")
    assert capsys.readouterr().err == ""
    assert stop_for(raised.value, PREDICT_COMMAND) == EXIT_NONE_SUCCEEDED
    assert capsys.readouterr().err == (
        "error: none of the 2 images could be predicted (first: batch_01/x.png: broken); all_batches.csv lists each\n"
    )
