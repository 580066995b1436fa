"""Real DDP on the CPU (2 processes, gloo): each image exactly once, one merged summary, no hang."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from anomalib_folder_ext.data.datamodule import FolderShardSampler
from conftest import REPO, run_cli, run_here, write_images

pytestmark = pytest.mark.slow

SEVEN = {f"img{i}.png": ((64 + 16 * i, 64), "PNG") for i in range(1, 8)}
DDP = ["--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp"]


def predict(checkpoint: Path, folder: Path, cwd: Path, *extra: str, timeout: int = 300, env: dict | None = None):
    args = ["anomalib", "predict", "--config", str(REPO / "configs/folder.yaml"), "--ckpt_path", str(checkpoint),
            "--data.init_args.folder_path", str(folder), *extra]
    return run_cli(args, cwd=cwd, timeout=timeout, env={"PYTHONPATH": str(Path(__file__).parent), **(env or {})})


def rows(output_dir: Path) -> list[dict[str, str]]:
    from anomalib_folder_ext.outputs.summary import read_results

    return read_results(output_dir)


def test_shard_sampler_takes_every_index_once_even_with_more_ranks_than_images():
    for size, ranks in [(7, 2), (1, 2), (3, 4), (10, 3), (0, 2)]:
        shards = [list(FolderShardSampler(range(size), ranks, rank)) for rank in range(ranks)]
        assert sorted(i for shard in shards for i in shard) == list(range(size))
        assert [len(FolderShardSampler(range(size), ranks, r)) for r in range(ranks)] == [len(s) for s in shards]


@pytest.fixture(scope="module")
def seven(checkpoint, tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp7")
    folder = root / "seven"
    write_images(folder, SEVEN)
    single = run_here(["anomalib", "predict", "--config", str(REPO / "configs/folder.yaml"), "--ckpt_path", str(checkpoint),
                       "--data.init_args.folder_path", str(folder), "--data.init_args.output_dir", "single"], cwd=root)
    assert single.returncode == 0, single.stderr[-3000:]
    return root, folder


def test_two_ranks_write_each_image_once_and_match_one_process(checkpoint, seven):
    root, folder = seven
    result = predict(checkpoint, folder, root, "--data.init_args.output_dir", "ddp", *DDP)
    assert result.returncode == 0, result.stderr[-3000:]
    single, ddp = root / "single", root / "ddp"
    ddp_rows = rows(ddp)
    assert [r["image"] for r in ddp_rows] == [f"img{i}.png" for i in range(1, 8)]  # every image once, sorted
    assert len(list(ddp.glob("*_anomaly.npy"))) == 7 and len(list(ddp.glob("*_anomaly.png"))) == 7
    for mine, reference in zip(ddp_rows, rows(single), strict=True):
        assert mine == reference
        assert np.abs(np.load(ddp / mine["npy"]) - np.load(single / reference["npy"])).max() <= 1e-6
    text = (ddp / "results_summary.txt").read_text()
    assert "ranks             : 2 (images per rank: 4, 3)" in text  # 4 + 3: no padding duplicates
    assert "images            : 7 (7 ok, 0 failed)" in text


def test_anomalib_folder_runs_ddp_with_more_ranks_than_images(checkpoint, tmp_path):
    write_images(tmp_path / "one", {"only.png": ((80, 80), "PNG")})
    result = run_cli(
        ["anomalib-folder", "predict", "--model_path", str(checkpoint), "--folder_path", str(tmp_path / "one"),
         "--accelerator", "cpu", "--devices", "2", "--trainer.strategy", "ddp", "--save_as_image", "False"],
        cwd=tmp_path, timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    output = tmp_path / "inference_results_one"
    assert [r["image"] for r in rows(output)] == ["only.png"]
    assert "ranks             : 2 (images per rank: 1, 0)" in (output / "results_summary.txt").read_text()
    assert not list(output.glob("*.png"))


@pytest.mark.parametrize("failing_rank", [0, 1])
def test_a_failing_rank_ends_the_run_instead_of_hanging(checkpoint, seven, tmp_path, failing_rank):
    _, folder = seven
    started = time.monotonic()
    result = predict(checkpoint, folder, tmp_path, *DDP, "--trainer.callbacks+=ddp_helpers.FailOnRank",
                     "--trainer.callbacks.rank", str(failing_rank), timeout=240,
                     env={"ANOMALIB_FOLDER_LOST_AFTER": "20"})  # the default 60 s, shortened
    assert result.returncode != 0
    assert time.monotonic() - started < 200
    assert not (tmp_path / "inference_results_seven" / "results.csv").exists()  # no summary claiming completeness
