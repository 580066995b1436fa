"""Batch folders end to end: split, the override configs, many folders in one process, resume, DDP."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from anomalib_folder_ext.outputs.summary import read_results
from conftest import REPO, command_env, run_cli, run_here, write_images

pytestmark = pytest.mark.slow

SOURCE = {f"part{index}.png": ((64, 64), "PNG") for index in range(1, 14)}
DDP = ["--accelerator", "cpu", "--devices", "2", "--trainer.strategy", "ddp"]


def batches(root: Path, checkpoint: Path, output_root: str, *extra: str, cwd: Path, timeout: int = 400):
    args = ["anomalib-folder", "batches", str(root), "--model_path", str(checkpoint), "--output_root", output_root,
            "--batch_size", "2", *extra]
    return run_cli(args, cwd=cwd, timeout=timeout)


def npy_bytes(output_dir: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(output_dir.glob("*.npy"))}


@pytest.fixture(scope="module")
def job(checkpoint, tmp_path_factory):
    """13 images split 5/5/3, then all three folders predicted by one `batches` process."""
    work = tmp_path_factory.mktemp("batches")
    write_images(work / "source", SOURCE, seed=3)
    split = run_cli(["anomalib-folder", "split", "source", "--size", "5", "--out", "root"], cwd=work)
    assert split.returncode == 0, split.stderr
    result = batches(work / "root", checkpoint, "out", "--verbose", cwd=work)  # verbose: Lightning's own lines show
    assert result.returncode == 0, result.stderr[-4000:]
    return work, result


def test_one_process_predicts_three_folders_with_one_checkpoint_load(job):
    work, result = job
    out = work / "out"
    counts = {name: len(read_results(out / f"inference_results_{name}")) for name in ("batch_01", "batch_02", "batch_03")}
    assert counts == {"batch_01": 5, "batch_02": 5, "batch_03": 3}
    for name in counts:
        assert len(list((out / f"inference_results_{name}").glob("*_anomaly.npy"))) == counts[name]
        assert (out / f"inference_results_{name}" / "config.yaml").read_text().count(f"root/{name}") == 1
    combined = read_results_file(out / "all_batches.csv")
    assert len(combined) == 13 and [r["batch"] for r in combined] == ["batch_01"] * 5 + ["batch_02"] * 5 + ["batch_03"] * 3
    assert combined[0]["image"] == "part1.png" and combined[0]["npy"] == "inference_results_batch_01/part1_anomaly.npy"
    assert (out / combined[12]["npy"]).is_file()
    summary = (out / "all_batches_summary.txt").read_text()
    assert "13 (13 ok, 0 failed) in 3 batch folders" in summary and "Most anomalous images of all batch folders" in summary
    assert re.search(r"device\s+: cpu \(SingleDeviceStrategy\), ranks 1\n", summary), summary  # what ran, not "auto"

    output = result.stdout + result.stderr
    assert output.count("Restoring states from the checkpoint") == 1  # loaded once, for all three folders
    lines = [line for line in result.stdout.splitlines() if re.match(r"\[\d+/\d+\] batch_", line)]
    assert [line.split("]")[0] for line in lines] == ["[1/3", "[2/3", "[3/3"]
    assert "5/13 images, ETA" in lines[0] and "folder overhead" in lines[1]
    assert result.stdout.strip().splitlines()[-1].startswith("done: 3 batch folders, 13 images (13 ok, 0 failed)")


def read_results_file(path: Path) -> list[dict[str, str]]:
    import csv

    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_a_second_run_predicts_nothing_and_changes_no_map(job, checkpoint):
    work, _ = job
    out = work / "out"
    maps = {path: path.stat().st_mtime_ns for path in out.rglob("*_anomaly.*")}
    before = (out / "all_batches.csv").read_bytes()
    result = batches(work / "root", checkpoint, "out", "--verbose", cwd=work)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("done earlier") == 3
    assert "Restoring states" not in result.stdout + result.stderr and "Predicting" not in result.stdout + result.stderr
    assert {path: path.stat().st_mtime_ns for path in out.rglob("*_anomaly.*")} == maps
    assert (out / "all_batches.csv").read_bytes() == before


def test_the_split_configs_drive_anomalib_predict_and_predict_batches_alike(job, checkpoint):
    work, _ = job
    single = run_here(["anomalib", "predict", "--config", str(REPO / "configs/folder.yaml"),
                       "--config", str(work / "root/configs/batch_03.yaml"), "--ckpt_path", str(checkpoint),
                       "--data.init_args.batch_size", "2"], cwd=work)
    assert single.returncode == 0, single.stderr[-3000:]
    reference = work / "out" / "inference_results_batch_03"
    assert read_results(work / "inference_results_batch_03") == read_results(reference)
    assert npy_bytes(work / "inference_results_batch_03") == npy_bytes(reference)

    yaml_run = run_here(["anomalib-folder", "predict", "--config", str(REPO / "configs/folder.yaml"),
                         "--ckpt_path", str(checkpoint), "--data.init_args.batch_size", "2",
                         "--batches", str(work / "root/configs/batch_02.yaml"), str(work / "root/configs/batch_03.yaml"),
                         "--output_root", "yaml_out"], cwd=work)
    assert yaml_run.returncode == 0, yaml_run.stderr[-3000:]
    for name in ("batch_02", "batch_03"):
        assert read_results(work / "yaml_out" / f"inference_results_{name}") == read_results(work / "out" / f"inference_results_{name}")
    assert len(read_results_file(work / "yaml_out" / "all_batches.csv")) == 8


def test_killed_mid_folder_then_resumed_gives_the_clean_runs_results(job, checkpoint):
    work, _ = job
    args = ["anomalib-folder", "batches", str(work / "root"), "--model_path", str(checkpoint), "--output_root", "killed",
            "--batch_size", "2", "--only", "batch_01"]
    env = command_env()
    process = subprocess.Popen(args, cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    journal_file = work / "killed" / "inference_results_batch_01" / ".journal" / "rank0.jsonl"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if journal_file.is_file() and journal_file.read_text().count("\n") >= 3:  # settings + 2 images
            break
        time.sleep(0.05)
    assert process.poll() is None, "the run ended before it could be killed"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(30)

    out = work / "killed" / "inference_results_batch_01"
    assert not (out / "results.csv").exists()
    assert 2 <= len(list(out.glob("*_anomaly.npy"))) < 5
    for path in out.glob("*_anomaly.npy"):
        assert np.load(path).shape == (256, 256)  # nothing half-written under a final name

    resumed = run_cli(args, cwd=work, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed" in resumed.stdout
    clean = work / "out" / "inference_results_batch_01"
    assert (out / "results.csv").read_bytes() == (clean / "results.csv").read_bytes()
    assert npy_bytes(out) == npy_bytes(clean)
    assert not list(out.rglob(".*.tmp"))
    assert "finished by an earlier run (resumed)" in (out / "results_summary.txt").read_text()


def test_two_ddp_ranks_over_two_folders_match_one_process(job, checkpoint):
    work, _ = job
    result = batches(work / "root", checkpoint, "ddp", "--only", "batch_01", "batch_03", "--report", "True", *DDP,
                     cwd=work)
    assert result.returncode == 0, result.stderr[-4000:]
    for name in ("batch_01", "batch_03"):
        mine, reference = work / "ddp" / f"inference_results_{name}", work / "out" / f"inference_results_{name}"
        assert read_results(mine) == read_results(reference)  # each image once, same numbers
        for path in npy_bytes(reference):
            assert np.abs(np.load(mine / path) - np.load(reference / path)).max() <= 1e-6
        assert "images per rank: " in (mine / "results_summary.txt").read_text()
    assert len(read_results_file(work / "ddp" / "all_batches.csv")) == 8
    assert result.stdout.count("[1/2]") == 1  # one rank prints
    index = (work / "ddp" / "index.html").read_text()  # one page linking each folder's report
    for name in ("batch_01", "batch_03"):
        assert f'href="./inference_results_{name}/report.html"' in index
        assert (work / "ddp" / f"inference_results_{name}" / "report.png").is_file()


def test_an_override_that_changes_more_than_data_is_refused_before_any_folder_runs(job, checkpoint):
    work, _ = job
    bad = work / "bad_precision.yaml"
    bad.write_text(f"data:\n  init_args:\n    folder_path: {work / 'root/batch_03'}\ntrainer:\n  precision: bf16-mixed\n")
    result = run_here(["anomalib-folder", "predict", "--config", str(REPO / "configs/folder.yaml"),
                       "--ckpt_path", str(checkpoint), "--batches", str(work / "root/configs/batch_01.yaml"), str(bad),
                       "--output_root", "refused"], cwd=work)
    assert result.returncode != 0
    error = result.stderr.strip().splitlines()[-1]
    assert "bad_precision.yaml: changes trainer" in error and "only data settings may differ" in error, result.stderr[-2000:]
    assert not (work / "refused" / "inference_results_batch_01").exists()


def test_a_single_predict_with_resume_on_a_finished_folder_predicts_nothing(job, checkpoint):
    work, _ = job
    out = work / "out" / "inference_results_batch_03"
    before = (out / "results.csv").read_bytes()
    maps = {path: path.stat().st_mtime_ns for path in out.glob("*_anomaly.*")}
    result = run_cli(["anomalib-folder", "predict", "--config", str(REPO / "configs/folder.yaml"),
                      "--ckpt_path", str(checkpoint), "--data.init_args.folder_path", str(work / "root/batch_03"),
                      "--data.init_args.output_dir", str(out), "--resume", "True"], cwd=work, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith(f"{out.relative_to(work)}/: 3 images") and "3 from the earlier run" in last and "DataLoader" not in output
    assert (out / "results.csv").read_bytes() == before
    assert {path: path.stat().st_mtime_ns for path in out.glob("*_anomaly.*")} == maps
    assert "3 finished by an earlier run (resumed)" in (out / "results_summary.txt").read_text()
