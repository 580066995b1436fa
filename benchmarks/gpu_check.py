"""One-call check on a lent GPU machine: 1-GPU predict on a generated folder, outputs verified.

    python benchmarks/gpu_check.py --images 2000 --batch_size 32 [--devices 1] [--precision 32-true]

Generates textured 256x256 images, builds a calibrated EfficientAd checkpoint (no download),
runs `anomalib-folder predict --accelerator gpu`, then checks that every image has an NPY
(float32, 256x256, in [0, 1]) and a PNG and one CSV row, and prints a small table. Exit code 1
when a check fails. Needs the project installed (`pip install -e .`) and a CUDA torch.
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--devices", default="1")
    parser.add_argument("--precision", default="32-true")
    parser.add_argument("--work", type=Path, default=None, help="scratch dir (default: a temp dir)")
    options = parser.parse_args()

    import torch

    from anomalib_folder_ext.demo import calibrated_checkpoint

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device visible", file=sys.stderr)
        return 1
    work = options.work or Path(tempfile.mkdtemp(prefix="gpu_check_"))
    folder = work / "gpu_folder"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    base = (rng.random((256, 256, 3)) * 255).astype(np.uint8)
    for i in range(options.images):
        noise = rng.integers(-8, 9, base.shape)
        Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8)).save(folder / f"img{i:05d}.png", compress_level=1)
    checkpoint = calibrated_checkpoint(work / "model.ckpt", [base] * 4)

    started = time.perf_counter()
    run = subprocess.run(
        ["anomalib-folder", "predict", "--model_path", str(checkpoint), "--folder_path", str(folder),
         "--output_dir", str(work / "out"), "--accelerator", "gpu", "--devices", options.devices,
         "--precision", options.precision, "--batch_size", str(options.batch_size)],
        check=False,
    )
    elapsed = time.perf_counter() - started
    out = work / "out"
    problems = []
    if run.returncode != 0:
        problems.append(f"anomalib-folder exited {run.returncode}")
    rows = list(csv.DictReader((out / "results.csv").open())) if (out / "results.csv").exists() else []
    if len(rows) != options.images or len({r["image"] for r in rows}) != options.images:
        problems.append(f"{len(rows)} CSV rows for {options.images} images")
    for row in rows[:: max(1, len(rows) // 50)]:
        array = np.load(out / row["npy"])
        if array.dtype != np.float32 or array.shape != (256, 256) or array.min() < 0 or array.max() > 1:
            problems.append(f"{row['npy']}: {array.dtype} {array.shape} [{array.min()}, {array.max()}]")
        if not (out / row["png"]).is_file():
            problems.append(f"missing {row['png']}")
    print(f"| GPU | images | batch | precision | wall s (incl. start-up) | images/s |")
    print(f"| {torch.cuda.get_device_name(0)} | {options.images} | {options.batch_size} | {options.precision} "
          f"| {elapsed:.1f} | {options.images / elapsed:.1f} |")
    for problem in problems:
        print(f"FAIL: {problem}", file=sys.stderr)
    print("gpu_check: " + ("FAILED" if problems else "all outputs present and valid"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
