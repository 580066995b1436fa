"""A hostile user's cases, end to end through the CLI: reused output dirs, a second run at once,
unusual images, runs where some or all images fail, Ctrl-C, and what the console shows."""

from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import command_env, run_cli, run_here, write_images

pytestmark = pytest.mark.slow

NOISE = ("INFO", "GPU available", "TPU available", "Tip:", "FutureWarning", "deprecated", "Restoring states",
         "dirpath has changed", "Traceback")


def predict(checkpoint: Path, folder: Path, out: Path, *extra: str, env: dict | None = None, command: bool = True):
    """The command in its own process (what the console shows), or with ``command=False`` in this one."""
    run = run_cli if command else run_here
    return run(["anomalib-folder", "predict", "--model_path", str(checkpoint), "--folder_path", str(folder),
                "--output_dir", str(out), "--batch_size", "4", *extra], cwd=out.parent, env=env)


def rows_of(out: Path) -> dict[str, dict[str, str]]:
    with (out / "results.csv").open(newline="") as handle:
        return {row["image"]: row for row in csv.DictReader(handle)}


def test_a_reused_output_dir_is_refused_then_replaced_on_request_and_the_console_is_clean(checkpoint, tmp_path):
    folder, out = tmp_path / "batch_01", tmp_path / "results"
    write_images(folder, {"a.png": ((64, 64), "PNG"), "b.png": ((64, 64), "PNG")})

    first = predict(checkpoint, folder, out, env={"PYTHONWARNINGS": ""})  # warnings as a user sees them
    assert first.returncode == 0, first.stderr[-3000:]
    console = first.stdout + first.stderr
    assert not [word for word in NOISE if word in console], console[-3000:]
    last = first.stdout.strip().splitlines()[-1]
    assert last.startswith("results/: 2 images, 0 defect, 2 ok") and last.endswith("results.csv, defective.csv, results_summary.txt")
    assert first.stderr.strip() == ""

    (folder / "b.png").unlink()
    write_images(folder, {"c.png": ((64, 64), "PNG")}, seed=5)
    before = (out / "results.csv").read_bytes()
    refused = predict(checkpoint, folder, out)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert "results holds the results of an earlier run (results.csv of 2 images)" in refused.stderr
    assert "--overwrite True" in refused.stderr and (out / "results.csv").read_bytes() == before

    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:  # a live run's lock: refused before anything loads, whatever the flags
        (out / ".lock").write_text(json.dumps({"token": "x", "pid": other.pid, "host": socket.gethostname()}))
        locked = predict(checkpoint, folder, out, "--overwrite", "True")
    finally:
        other.kill()
        other.wait()
    assert locked.returncode == 2 and f"another run is writing there (pid {other.pid}" in locked.stderr

    replaced = predict(checkpoint, folder, out, "--overwrite", "True", command=False)  # the stale lock is taken over
    assert replaced.returncode == 0, replaced.stderr[-3000:]
    assert sorted(rows_of(out)) == ["a.png", "c.png"]
    assert not (out / "b_anomaly.npy").exists() and not (out / "b_anomaly.png").exists()  # no map of a gone image
    assert not (out / ".lock").exists()


def _sixteen_bit_png(path: Path) -> None:
    Image.fromarray(np.linspace(0, 65535, 96 * 96).reshape(96, 96).astype(np.uint16)).save(path)


@pytest.fixture
def forward_sizes(monkeypatch) -> list[int]:
    """How many images each forward pass of the EfficientAd network got, in this process."""
    from anomalib.models.image.efficient_ad.torch_model import EfficientAdModel

    sizes, forward = [], EfficientAdModel.forward

    def counted(self, batch, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        sizes.append(len(batch))
        return forward(self, batch, *args, **kwargs)

    monkeypatch.setattr(EfficientAdModel, "forward", counted)
    return sizes


def test_unusual_images_get_rows_notes_and_a_warning_and_all_failed_exits_3(checkpoint, tmp_path, forward_sizes):
    folder, out = tmp_path / "odd", tmp_path / "out"
    write_images(folder, {"plain.png": ((256, 256), "PNG")})
    _sixteen_bit_png(folder / "grey16.png")
    Image.new("RGBA", (256, 256), (90, 120, 150, 20)).save(folder / "alpha.png")
    pages = [Image.new("RGB", (256, 256), (value,) * 3) for value in (40, 80)]
    pages[0].save(folder / "pages.tif", save_all=True, append_images=pages[1:])
    Image.new("RGB", (700, 700)).save(folder / "huge.png")
    (folder / "broken.png").write_bytes(b"\x89PNG not really")
    (folder / "gone.png").symlink_to(folder / "deleted.png")

    result = predict(checkpoint, folder, out, "--max_pixels", "400000", command=False)
    assert result.returncode == 0, result.stderr[-3000:]
    warning = result.stderr.strip().splitlines()
    assert len(warning) == 1 and warning[0].startswith("warning: 3 of 7 images failed"), result.stderr
    assert "3 failed" in result.stdout.strip().splitlines()[-1]
    rows = rows_of(out)
    assert rows["grey16.png"]["status"] == "ok" and rows["grey16.png"]["note"] == "16-bit scaled to 8; upscaled from 96 x 96"
    assert rows["alpha.png"]["note"] == "alpha dropped" and rows["pages.tif"]["note"] == "first of 2 pages"
    assert rows["plain.png"]["note"] == ""
    assert "more than max_pixels 400,000" in rows["huge.png"]["error"]
    assert rows["gone.png"]["error"].startswith("dangling symlink")
    assert all(rows[name]["status"] == "failed" for name in ("huge.png", "broken.png", "gone.png"))
    assert sum(forward_sizes) == 4  # the 3 failed files cost their decode only, never a forward pass

    forward_sizes.clear()
    bad, bad_out = tmp_path / "bad", tmp_path / "bad_out"
    bad.mkdir()
    for name in ("x.png", "y.jpg"):
        (bad / name).write_bytes(b"not an image")
    failed = predict(checkpoint, bad, bad_out, command=False)
    assert failed.returncode == 3
    assert failed.stderr.strip().splitlines() == [
        f"error: none of the 2 images could be predicted (first: x.png: {rows_of(bad_out)['x.png']['error']}); "
        "bad_out/results.csv lists each"
    ]
    assert sum(forward_sizes) == 0


def test_ctrl_c_exits_130_keeps_what_finished_and_resume_finishes(checkpoint, tmp_path):
    folder, out = tmp_path / "many", tmp_path / "out"
    write_images(folder, {f"img{index:02d}.png": ((128, 128), "PNG") for index in range(10)})
    args = ["anomalib-folder", "predict", "--model_path", str(checkpoint), "--folder_path", str(folder),
            "--output_dir", str(out), "--batch_size", "2", "--num_workers", "1"]
    env = command_env()
    # Its own process group, as a terminal's job, and Ctrl-C's default action even when this test runs
    # in a background job (which starts with SIGINT ignored, and a child inherits that).
    process = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    journal = out / ".journal" / "rank0.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if journal.exists() and journal.read_text().count("\n") >= 3:  # the settings line and two images
            break
        time.sleep(0.2)
    assert process.poll() is None, "the run ended before it could be interrupted"
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C reaches the whole group: the run and its workers
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-3000:]
    assert stderr.strip().splitlines()[-1].startswith("interrupted: "), stderr[-3000:]
    assert "--resume True" in stderr and not (out / "results.csv").exists() and not (out / ".lock").exists()
    finished = journal.read_text().count("\n") - 1
    assert 2 <= finished < 10

    resumed = run_here(args + ["--resume", "True"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert len(rows_of(out)) == 10 and "from the earlier run" in resumed.stdout.strip().splitlines()[-1]
