"""Relabel: how long deciding a finished output dir again takes, without the model.

    .venv/bin/python benchmarks/relabel.py                 # 10,000 rows: about 3 min on 2 cores, 2.7 GB of disk
    .venv/bin/python benchmarks/relabel.py --images 1000   # a smoke run

1. A real output dir of ``--images`` rows: ``anomalib predict --config configs/folder.yaml`` over a
   folder of hard-linked 128x128 images, with an EfficientAd-S checkpoint made here offline
   (``demo.calibrated_checkpoint``) whose network is ``io_ceiling_model.TrivialMapEfficientAd``
   (everything but the network runs for real: the journal, NPY maps, 1-bit masks, the summaries,
   the finished record), ``save_mask`` on, ``save_as_image`` off.
2. ``anomalib-folder relabel`` on it, each a real subprocess, wall time with the process's start:
   - a new image threshold (the median score), the pixel threshold kept: decisions, ``results.csv``,
     ``defective.csv``, the summary, the journal rewritten; no map is read;
   - a new image and pixel threshold: every NPY read back and every mask made and written again;
   - ``anomalib-folder --help``: the command's own start (imports), for scale.
3. The decisions are checked: every row ``defect`` exactly when its journal score is at or above the
   threshold.

Everything goes into one temp dir under /tmp, deleted at the end unless ``--keep``. Nothing here asserts
but the decisions' check.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from common import BIN, REPO, Bench, finished_record, journal_rows, make_folder, print_table, run_timed, scratch, subprocess_env

TRIVIAL_MODEL = "io_ceiling_model.TrivialMapEfficientAd"


def decided_against_the_rule(output_dir: Path, threshold: float) -> list[str]:
    return [row.image for row in journal_rows(output_dir) if row.decision != ("defect" if row.score >= threshold else "ok")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", action="store_true")
    options = parser.parse_args()
    with scratch("relabel_bench_", options.keep) as work:
        os.environ["XDG_CACHE_HOME"] = str(work / "cache")
        from anomalib_folder_ext.tools.demo import calibrated_checkpoint

        make_folder(work / "distinct", 50, size=128)
        distinct = sorted((work / "distinct").iterdir())
        make_folder(work / "calibration", 8, seed=1, size=256)
        calibration = [np.asarray(Image.open(path).convert("RGB")) for path in sorted((work / "calibration").iterdir())]
        checkpoint = calibrated_checkpoint(work / "model.ckpt", calibration)
        folder = work / "images"
        folder.mkdir()
        for index in range(options.images):
            os.link(distinct[index % len(distinct)], folder / f"img{index:06d}.png")
        bench = Bench(work, checkpoint, batch_size=32)
        extra = ["--trainer.callbacks.init_args.save_mask", "true", "--trainer.callbacks.init_args.save_as_image", "false"]
        started = time.perf_counter()
        bench.ours(folder, "32-true", TRIVIAL_MODEL, tag="relabel", extra=extra)
        print(f"the output dir: {options.images:,} rows in {time.perf_counter() - started:.0f} s", flush=True)
        out = work / "relabel_32-true_images" / "results"
        scores = [row.score for row in journal_rows(out)]
        written = finished_record(out)["thresholds"]["pixel"]
        image = max(float(np.median(scores)), written)  # the pixel threshold stays: no map is read
        pixel = float(np.quantile(scores, 0.25))
        env = subprocess_env(work)
        relabel = [str(BIN / "anomalib-folder"), "relabel", str(out)]
        # each run's thresholds differ from the last one's: a decision run keeps the pixel threshold (no map is
        # read), a mask run changes it (every NPY read, every mask written)
        runs = {"anomalib-folder --help (the start)": lambda _: [str(BIN / "anomalib-folder"), "--help"],
                "relabel --threshold (decisions)": lambda run: [*relabel, "--threshold", repr(image * (1 + run / 100)),
                                                                "--pixel_threshold", repr(written)],
                "relabel --threshold --pixel_threshold (masks too)": lambda run: [
                    *relabel, "--threshold", repr(image), "--pixel_threshold", repr(pixel * (1 + run / 100))]}
        rows = []
        for name, command in runs.items():
            seconds = []
            for run in range(options.repeats):
                seconds.append(run_timed(command(run), REPO, env, work / "log.txt").seconds)
                if command(run)[1] == "relabel":
                    wrong = decided_against_the_rule(out, float(command(run)[4]))
                    if wrong:
                        sys.exit(f"benchmark: {len(wrong)} rows decided against the rule, first {wrong[0]}")
            rows.append([name, f"{min(seconds):.2f}", f"{statistics.median(seconds):.2f}", f"{max(seconds):.2f}"])
        cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name")), "?")
        print(f"\n{options.images:,}-row output dir (NPY and 1-bit masks at 256x256), {os.cpu_count()} CPUs ({cpu}); "
              f"seconds over {options.repeats} runs, each a process:")
        print_table(["command", "min s", "median s", "max s"], rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
