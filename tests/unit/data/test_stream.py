"""The watched datamodule: its config keys are the watch options, with their defaults; its names and refusals."""

from __future__ import annotations

import inspect
from dataclasses import fields
from pathlib import Path

import pytest

from anomalib_folder_ext.data.stream import WatchedFolderDataModule, check_watch_dirs
from anomalib_folder_ext.errors import FolderInputError, InputError, OutputDirError
from anomalib_folder_ext.options import WatchOptions, WriterOptions
from anomalib_folder_ext.outputs.journal import Journal
from anomalib_folder_ext.outputs.owned import OwnedDir
from anomalib_folder_ext.outputs.summary import ImageResult


def test_every_watch_option_is_a_config_key_with_the_options_default():
    parameters = inspect.signature(WatchedFolderDataModule.__init__).parameters
    for option in fields(WatchOptions):
        assert option.name in parameters, option.name
        assert parameters[option.name].default == option.default, option.name


def test_a_bad_watch_option_is_refused_when_the_datamodule_is_made(tmp_path):
    with pytest.raises(InputError, match="rotate 'weekly'"):
        WatchedFolderDataModule(tmp_path, rotate="weekly")
    with pytest.raises(InputError, match="post 'localhost:8080'"):
        WatchedFolderDataModule(tmp_path, post="localhost:8080")
    with pytest.raises(InputError, match="sort_move needs sort_into"):
        WatchedFolderDataModule(tmp_path, sort_move=True)


def test_output_and_sort_dirs_inside_the_watched_folder_are_refused(tmp_path):
    (tmp_path / "in").mkdir()
    check_watch_dirs(tmp_path / "in", tmp_path / "out", None)
    with pytest.raises(OutputDirError, match="output_dir .* is inside the watched folder"):
        check_watch_dirs(tmp_path / "in", tmp_path / "in" / "results", None)
    with pytest.raises(OutputDirError, match="sort_into .* is inside the watched folder"):
        check_watch_dirs(tmp_path / "in", tmp_path / "out", str(tmp_path / "in" / "sorted"))
    with pytest.raises(FolderInputError, match="no such folder to watch"):
        check_watch_dirs(tmp_path / "missing", tmp_path / "out", None)


def test_rotate_needs_the_watch_loop(tmp_path):
    (tmp_path / "in").mkdir()
    data = WatchedFolderDataModule(tmp_path / "in", tmp_path / "out", rotate="hourly")
    with pytest.raises(FolderInputError, match="rotate: a new output dir per period needs anomalib-folder watch"):
        data.setup("predict")


def test_earlier_rows_come_first_with_their_stems_and_count_as_done(tmp_path):
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    for name in ("a.png", "a.jpg", "b.png"):
        (folder / name).write_bytes(b"x")
    journal = Journal(OwnedDir(out, create=True), 0, {})
    journal.append([ImageResult("a.jpg", npy="a_anomaly.npy", source=(1, 2, 3, 4))])  # it came first, alone
    journal.close()
    data = WatchedFolderDataModule(folder, out)
    try:
        data.setup("predict")
        assert [path.as_posix() for path in data.relative_paths] == ["a.jpg", "a.png", "b.png"]
        assert data.done == {"a.jpg": (1, 2, 3, 4)}
        names = data.output_names(WriterOptions(save_as_image=False))
        assert names.files("a.jpg")["npy"] == "a_anomaly.npy"  # the earlier row's file, as it is on disk
        assert names.files("a.png")["npy"] == "a_png_anomaly.npy"  # the stem is taken: never overwritten
    finally:
        data.close()


def test_the_stream_counts_its_waits_for_images_and_the_watch_says_what_it_gave_no_row(tmp_path, capsys):
    """A watch's rate is its busy time's: the model's waits for the next image to land are counted apart.
    What got no row (not an image, deleted before it was read) is said once as the watch ends."""
    import threading

    import numpy as np
    from PIL import Image

    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()

    def land(name: str) -> None:
        Image.fromarray(np.full((32, 32, 3), 128, np.uint8)).save(folder / f".{name}")
        (folder / f".{name}").rename(folder / name)

    data = WatchedFolderDataModule(folder, out, batch_size=1, image_size=(32, 32))
    try:
        batches = iter(data.predict_dataloader())
        land("first.png")
        assert next(batches).relative_path == ["first.png"]
        assert data.stream.waited_s == 0.0  # before the first batch: start-up, not a wait between parts
        (folder / "notes.txt").write_text("not an image")
        later = threading.Timer(0.5, land, ["second.png"])  # the model asks for the next batch at once
        later.start()
        assert next(batches).relative_path == ["second.png"]
        later.join()
        assert data.stream.waited_s >= 0.4
    finally:
        data.stop("the test ends")
        data.close()
    assert "no row for 1 file that is not an image (extensions" in capsys.readouterr().out
