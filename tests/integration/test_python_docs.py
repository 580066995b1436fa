"""docs/PYTHON.md runs as written: its examples, in order, in one namespace, on a real checkpoint and real
images, in this process (a notebook's way), with no SystemExit and nothing left changed in the process."""

from __future__ import annotations

import logging
import re
import shutil
import sys

import pytest

from conftest import REPO, write_images

pytestmark = pytest.mark.slow

EXAMPLES = re.findall(r"```python\n(.*?)```", (REPO / "docs" / "PYTHON.md").read_text(), flags=re.S)


def test_the_page_has_examples():
    assert len(EXAMPLES) >= 8


def test_the_python_page_runs_as_written(checkpoint, tmp_path, monkeypatch, capsys):
    shutil.copy(checkpoint, tmp_path / "model.ckpt")
    spec = {f"part_{index}.png": ((256, 256), "PNG") for index in range(4)}
    write_images(tmp_path / "batch_01", spec)
    write_images(tmp_path / "batches" / "batch_01", dict(list(spec.items())[:2]), seed=2)
    write_images(tmp_path / "batches" / "batch_02", dict(list(spec.items())[:2]), seed=3)
    monkeypatch.chdir(tmp_path)
    hook, lightning_level = sys.excepthook, logging.getLogger("lightning.pytorch").level
    namespace: dict = {}
    for number, example in enumerate(EXAMPLES, 1):
        try:
            exec(compile(example, f"docs/PYTHON.md example {number}", "exec"), namespace)  # noqa: S102
        except SystemExit as stopped:  # the library never ends the caller's process
            pytest.fail(f"example {number} raised SystemExit({stopped.code})")
    result, batches, export = namespace["result"], namespace["batches"], namespace["export"]
    assert result.images == 4 and result.ok == 4 and not result.failed
    assert (tmp_path / "results" / "batch_01" / "results.csv").is_file()
    assert namespace["again"].predicted == 0 and namespace["fresh"].predicted == 4
    assert namespace["anomaly_map"].dtype.name == "float32" and namespace["anomaly_map"].max() <= 1.0
    assert sorted(batches.folders) == ["batch_01", "batch_02"] and batches.images == 4
    assert batches.all_batches_csv.is_file()
    assert export.path.name == "model.xml" and namespace["exported"].images == 4
    assert namespace["writer"].result.images == 4
    assert sorted(path.name for path in (tmp_path / "results" / "engine" / "images" / "batch_01").iterdir()) == \
        sorted(spec), "anomalib's visualizer wrote a composite per image"
    out = capsys.readouterr().out
    assert "output_dir -> output_dir results/batch_01 holds the results of an earlier run" in out
    assert "predict_folder(..., overwrite=True)" in out
    assert "batch_sise: no such option (did you mean batch_size?)" in out
    assert sys.excepthook is hook, "a call restores the process's exception hook"
    assert logging.getLogger("lightning.pytorch").level == lightning_level, "a call restores the caller's logging"
