"""The folder an export writes: only its own, never through a link, never a graph beside the wrong record."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from anomalib_folder_ext.errors import OutputDirError
from anomalib_folder_ext.models.exported import TOOL
from anomalib_folder_ext.outputs.exportdir import check_export_dir, write_export


def digests(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def earlier_export(out: Path, graph: str = "model.xml") -> Path:
    out.mkdir()
    (out / graph).write_text("<net/>")
    if graph == "model.xml":
        (out / "model.bin").write_bytes(b"\0" * 8)
    (out / "export.json").write_text(json.dumps({"tool": TOOL, "file": graph}))
    return out


def test_a_new_an_empty_and_an_earlier_export_folder_are_taken(tmp_path):
    check_export_dir(tmp_path / "new")
    (tmp_path / "empty").mkdir()
    check_export_dir(tmp_path / "empty")
    check_export_dir(earlier_export(tmp_path / "earlier"))


@pytest.mark.parametrize(("record", "needle"), [
    ({"name": "my own notes"}, "holds files that are not an export of this tool"),
    (None, "holds files that are not an export of this tool"),
])
def test_a_users_export_json_and_model_are_never_replaced(tmp_path, record, needle):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "model.xml").write_text("the user's own model")
    if record is not None:
        (out / "export.json").write_text(json.dumps(record))
    before = digests(out)
    with pytest.raises(OutputDirError, match=needle) as refusal:
        check_export_dir(out)
    assert str(out) in str(refusal.value) and "\n" not in str(refusal.value)
    assert digests(out) == before


def test_other_files_beside_an_earlier_export_are_refused(tmp_path):
    out = earlier_export(tmp_path / "earlier")
    (out / "notes.txt").write_text("the user's")
    with pytest.raises(OutputDirError, match=r"holds an earlier export and other files \(notes.txt\)"):
        check_export_dir(out)


@pytest.mark.parametrize("name", ["export.json", "model.bin"])
def test_a_link_under_an_exports_name_is_refused_and_its_target_untouched(tmp_path, name):
    outside = tmp_path / "outside.txt"
    outside.write_text(json.dumps({"tool": TOOL, "file": "model.xml"}))
    out = earlier_export(tmp_path / "earlier")
    (out / name).unlink()
    os.symlink(outside, out / name)
    with pytest.raises(OutputDirError, match="is a symbolic link"):
        check_export_dir(out)
    assert json.loads(outside.read_text()) == {"tool": TOOL, "file": "model.xml"}


def test_a_file_or_the_home_directory_as_out_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputDirError, match="is a file, not a folder"):
        check_export_dir(tmp_path / "file")
    with pytest.raises(OutputDirError, match=r"--out .*: is your home directory; an export goes into a folder of its own"):
        check_export_dir(Path.home())


def test_a_new_export_replaces_the_earlier_graph_of_another_format(tmp_path):
    out = earlier_export(tmp_path / "earlier")
    work = tmp_path / "work"
    work.mkdir()
    (work / "model.onnx").write_bytes(b"onnx graph")
    write_export(out, {"model.onnx": work / "model.onnx"}, {"tool": TOOL, "file": "model.onnx"})
    assert sorted(p.name for p in out.iterdir()) == ["export.json", "model.onnx"]
    assert json.loads((out / "export.json").read_text())["file"] == "model.onnx"
    check_export_dir(out)  # and it is taken again by the next export
