"""Batch folders: what a folder costs beyond its images, in one `batches` process against one process
per folder, and what a finished 10,000-image folder costs to skip.

    .venv/bin/python benchmarks/batches.py            # about 6 min on 2 cores
    .venv/bin/python benchmarks/batches.py --quick    # a smoke run (numbers meaningless)

1. ``--folders`` folders of ``--images`` 256x256 PNGs, the real EfficientAd-S checkpoint:
   - one process: ``anomalib-folder batches ROOT`` (resume off); each folder's overhead is what its
     "[i/n]" line prints: the folder's time less its predict loop (listing, datamodule and workers,
     Trainer.predict set-up, summaries; the first folder also loads the checkpoint);
   - one process per folder: ``anomalib-folder predict --folder_path ROOT/batch_NN``; its overhead is
     the process's wall time less its predict loop (``loop_s`` of the folder's finished record,
     ``.journal/finished.json``).
2. A ``--big``-image folder (128x128 PNGs) predicted once with the I/O-ceiling model (the network
   replaced by a trivial map, so this takes about a minute), then ``batches`` again: the "skipped in"
   time of its line (listing the folder, checking the finished record and every output file) and the
   second process's wall time.

Benchmarks are not tests: nothing here asserts.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from common import BIN, finished_record, make_folder, print_table, subprocess_env
from PIL import Image

LINE = re.compile(r"^\[(\d+)/(\d+)\] (\S+): .*")


def run(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        print(result.stdout[-2000:], result.stderr[-4000:], sep="\n")
        raise SystemExit(f"failed: {' '.join(command)}")
    return seconds, result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folders", type=int, default=4)
    parser.add_argument("--images", type=int, default=16, help="images per folder in part 1")
    parser.add_argument("--big", type=int, default=10000, help="images of the finished folder in part 2")
    parser.add_argument("--work", type=Path, default=None, help="where to work (kept); default: a temp dir, deleted")
    parser.add_argument("--quick", action="store_true")
    options = parser.parse_args()
    if options.quick:
        options.folders, options.images, options.big = 2, 2, 200
    if options.work is not None:
        measure(options, options.work.resolve())
        return
    work = Path(tempfile.mkdtemp(prefix="afe_batches_"))
    try:  # a 10,000-image folder's outputs are gigabytes: never left in /tmp
        measure(options, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def measure(options: argparse.Namespace, work: Path) -> None:
    work.mkdir(parents=True, exist_ok=True)
    env = subprocess_env(work, PYTHONWARNINGS="ignore")
    os.environ["XDG_CACHE_HOME"] = env["XDG_CACHE_HOME"]
    print(f"benchmark dir: {work}", flush=True)

    from anomalib_folder_ext.tools.demo import calibrated_checkpoint

    source = work / "source"
    make_folder(source, options.folders * options.images)
    calibration = [np.asarray(Image.open(path).convert("RGB")) for path in sorted(source.iterdir())[:8]]
    checkpoint = calibrated_checkpoint(work / "model.ckpt", calibration)
    folder_cli = str(BIN / "anomalib-folder")
    run([folder_cli, "split", str(source), "--size", str(options.images), "--out", str(work / "root")], work, env)

    # 1. per-folder overhead
    one_s, output = run([folder_cli, "batches", str(work / "root"), "--model_path", str(checkpoint),
                         "--output_root", str(work / "one"), "--resume", "False"], work, env)
    one = {match.group(3): float(re.search(r"folder overhead ([\d.]+) s", line).group(1))
           for line in output.splitlines() if (match := LINE.match(line))}
    separate = {}
    separate_total = 0.0
    for name in one:
        seconds, _ = run([folder_cli, "predict", "--model_path", str(checkpoint), "--folder_path",
                          str(work / "root" / name), "--output_dir", str(work / "separate" / name)], work, env)
        separate_total += seconds
        separate[name] = seconds - finished_record(work / "separate" / name)["loop_s"]
    rows = [[name, f"{one[name]:.2f}", f"{separate[name]:.2f}"] for name in one]
    rows.append(["total wall time", f"{one_s:.1f}", f"{separate_total:.1f}"])
    print(f"\nPer-folder overhead, s ({options.folders} folders x {options.images} images, EfficientAd-S, CPU)")
    print_table(["folder", "one batches process", "one process per folder"], rows)
    extra = [one[name] for name in list(one)[1:]]
    if extra:
        print(f"  extra folder in one process: {sum(extra) / len(extra):.2f} s on average "
              f"(one process per folder: {sum(list(separate.values())[1:]) / len(extra):.2f} s)")

    # 2. skipping a finished big folder
    big = work / "big_root" / "batch_big"
    make_folder(big, options.big, seed=1, size=128)
    ceiling = ["--model.class_path", "io_ceiling_model.TrivialMapEfficientAd", "--batch_size", "32"]
    first_s, _ = run([folder_cli, "batches", str(work / "big_root"), "--model_path", str(checkpoint),
                      "--output_root", str(work / "big_out"), *ceiling], work, env)
    again_s, output = run([folder_cli, "batches", str(work / "big_root"), "--model_path", str(checkpoint),
                           "--output_root", str(work / "big_out"), *ceiling], work, env)
    skipped = re.search(r"skipped in ([\d.]+) s", output)
    print(f"\nA finished {options.big}-image folder, run again (resume on)")
    print_table(["", "s"],
                [["first run (I/O-ceiling model)", f"{first_s:.1f}"],
                 ["second run: the folder's skip (list, check record and files)", skipped.group(1) if skipped else "?"],
                 ["second run: whole process (imports, configs, skip, combined files)", f"{again_s:.1f}"]])


if __name__ == "__main__":
    main()
