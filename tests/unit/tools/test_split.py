"""`anomalib-folder split`: batch folders in natural order, a plan, override configs; reruns change nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from anomalib_folder_ext.cli.command import main
from anomalib_folder_ext.tools.split import SplitError, read_plan, split_folder
from conftest import run_cli


def make_source(folder: Path, count: int = 25) -> list[str]:
    folder.mkdir(parents=True)
    names = [f"img{index}.png" for index in range(1, count + 1)]
    for name in names:
        (folder / name).write_bytes(f"not decoded by split: {name}".encode())
    (folder / "notes.txt").write_text("no image")
    return names  # already in natural order: img2 before img10


def snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {
        path.relative_to(root).as_posix(): (path.read_bytes(), path.stat().st_mtime_ns)
        for path in sorted(root.rglob("*")) if path.is_file()
    }


@pytest.mark.slow  # the installed command, in a subprocess
def test_split_25_by_10_gives_10_10_5_in_natural_order_and_reruns_change_nothing(tmp_path):
    names = make_source(tmp_path / "src")
    root = tmp_path / "batches"
    first = run_cli(["anomalib-folder", "split", "src", "--size", "10", "--out", "batches"], cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "batch_03  5 images" in first.stdout and str(root / "batches.csv") in first.stdout

    assert sorted(p.name for p in root.iterdir()) == ["batch_01", "batch_02", "batch_03", "batches.csv", "configs"]
    plan = read_plan(root)
    assert [p.image for p in plan] == names
    assert [p.batch for p in plan] == ["batch_01"] * 10 + ["batch_02"] * 10 + ["batch_03"] * 5
    assert sorted(p.name for p in (root / "batch_03").iterdir()) == sorted(names[20:])
    assert os.path.samefile(root / "batch_01" / "img1.png", tmp_path / "src" / "img1.png")  # hard link by default
    yaml_text = (root / "configs" / "batch_02.yaml").read_text()
    assert f"folder_path: {root / 'batch_02'}" in yaml_text

    before = snapshot(root)
    again = run_cli(["anomalib-folder", "split", "src", "--size", "10", "--out", "batches"], cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "nothing changed" in again.stdout
    assert snapshot(root) == before  # byte-identical, not even rewritten


def test_a_different_split_into_the_same_root_is_refused_in_one_line(tmp_path, capsys):
    make_source(tmp_path / "src")
    split_folder(tmp_path / "src", tmp_path / "out", 10)
    before = snapshot(tmp_path / "out")
    assert main(["split", str(tmp_path / "src"), "--size", "8", "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "already holds a different split" in error and "out" in error
    assert "batches of 10 images; this one: of 8" in error  # what differs, not the same counts twice
    assert snapshot(tmp_path / "out") == before


def test_non_empty_batch_folders_of_something_else_are_refused(tmp_path):
    make_source(tmp_path / "src")
    (tmp_path / "out" / "batch_02").mkdir(parents=True)
    (tmp_path / "out" / "batch_02" / "mine.png").write_bytes(b"someone else's")
    with pytest.raises(SplitError, match=r"batch_02: not empty and not made by this split"):
        split_folder(tmp_path / "src", tmp_path / "out", 10)
    assert not (tmp_path / "out" / "batches.csv").exists()
    assert not (tmp_path / "out" / "batch_01").exists()  # refused before anything was placed


@pytest.mark.parametrize("mode", ["copy", "symlink", "move"])
def test_other_modes_and_their_reruns(tmp_path, mode):
    names = make_source(tmp_path / "src", count=5)
    result = split_folder(tmp_path / "src", tmp_path / "out", 2, mode=mode)
    assert result.batches == {"batch_01": 2, "batch_02": 2, "batch_03": 1} and result.placed == 5
    placed = tmp_path / "out" / "batch_03" / names[4]
    assert placed.read_bytes() == b"not decoded by split: img5.png"
    assert placed.is_symlink() == (mode == "symlink")
    assert (tmp_path / "src" / names[4]).exists() == (mode != "move")
    before = snapshot(tmp_path / "out")
    assert split_folder(tmp_path / "src", tmp_path / "out", 2, mode=mode).placed == 0
    assert snapshot(tmp_path / "out") == before


def test_an_interrupted_split_is_completed_by_the_same_command(tmp_path):
    make_source(tmp_path / "src")
    split_folder(tmp_path / "src", tmp_path / "out", 10)
    (tmp_path / "out" / "batch_02" / "img15.png").unlink()  # as if the split had stopped before it
    result = split_folder(tmp_path / "src", tmp_path / "out", 10)
    assert result.placed == 1 and (tmp_path / "out" / "batch_02" / "img15.png").exists()


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (["batches", "{root}/missing", "--model_path", "{root}/m.ckpt"], ["missing", "no such folder"]),
        (["batches", "{root}/out", "--model_path", "{root}/m.ckpt", "--only", "batch_09"],
         ["batch_09", "no such batch folder"]),
        (["predict", "--config", "configs/folder.yaml", "--batches", "{root}/nope.yaml"], ["nope.yaml", "no such"]),
    ],
    ids=["missing-root", "unknown-only", "missing-override"],
)
def test_batch_commands_reject_bad_input_in_one_line_before_loading_anything(args, fragments, tmp_path, capsys):
    make_source(tmp_path / "src", count=3)
    split_folder(tmp_path / "src", tmp_path / "out", 2)
    code = main([arg.format(root=tmp_path) for arg in args])
    error = capsys.readouterr().err.strip()
    assert code == 2 and error.count("\n") == 0, error
    assert error.startswith("anomalib-folder: error:") and all(fragment in error for fragment in fragments), error


def test_predict_needs_a_model_or_configs(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "--folder_path", "x"])
    assert exit_info.value.code == 2 and "--model_path" in capsys.readouterr().err
