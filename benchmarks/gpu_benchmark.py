"""One call on a lent GPU machine: end-to-end and bare-model images/s per precision, outputs verified.

    python benchmarks/gpu_benchmark.py                    # 5,000 images; estimated 5 min on one H100 (not yet run)
    python benchmarks/gpu_benchmark.py --images 500       # a shorter pass

Generates 256x256 PNGs, builds a calibrated EfficientAd-S checkpoint (offline, random teacher),
then for each precision (32-true, 16-mixed, bf16-mixed) and batch size (32, 64) runs
``anomalib predict --config configs/folder.yaml`` on one GPU, writing NPY + PNG + summary. It
prints one table: wall time with start-up, the predict loop's images/s (from results_summary.txt,
which excludes imports and checkpoint loading), the bare network's images/s in the same precision
and layout, and each mode's map error against 32-true. Every run's outputs are checked (one CSV
row, one float32 NPY in [0, 1] and one PNG per image); exit code 1 if a check fails.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import Bench, bare_model_images_per_s, make_folder, map_error  # noqa: E402

PRECISIONS = ("32-true", "16-mixed", "bf16-mixed")


def check_outputs(out: Path, images: int) -> list[str]:
    problems = []
    from anomalib_folder_ext.summary import read_results

    rows = read_results(out) if (out / "results.csv").exists() else []
    if len(rows) != images or len({row["image"] for row in rows}) != images:
        problems.append(f"{out.name}: {len(rows)} CSV rows for {images} images")
    for row in rows[:: max(1, len(rows) // 50)]:
        array = np.load(out / row["npy"])
        if array.dtype != np.float32 or array.shape != (256, 256) or array.min() < 0 or array.max() > 1:
            problems.append(f"{out.name}/{row['npy']}: {array.dtype} {array.shape} [{array.min()}, {array.max()}]")
        if not (out / row["png"]).is_file():
            problems.append(f"{out.name}: missing {row['png']}")
    return problems


def loop_images_per_s(out: Path) -> float:
    """The predict loop's own rate, as the writer reports it (start-up excluded)."""
    match = re.search(r"throughput\s*:\s*([\d.]+) images/s", (out / "results_summary.txt").read_text())
    return float(match.group(1)) if match else float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--batch_sizes", type=int, nargs="+", default=[32, 64])
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS))
    parser.add_argument("--work", type=Path, default=None, help="scratch dir (default: a temp dir)")
    parser.add_argument("--cpu_smoke", action="store_true",
                        help="run on the CPU to check the script itself, e.g. --images 16 --batch_sizes 8 --precisions 32-true")
    options = parser.parse_args()

    work = (options.work or Path(tempfile.mkdtemp(prefix="afe_gpu_"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    import os

    os.environ["XDG_CACHE_HOME"] = str(work / "cache")
    import torch

    device, accelerator = ("cpu", "cpu") if options.cpu_smoke else ("cuda", "gpu")
    if device == "cuda" and not torch.cuda.is_available():
        print("gpu_benchmark: no CUDA device visible", file=sys.stderr)
        return 1
    started = time.perf_counter()
    folder = work / f"images_{options.images}"
    make_folder(folder, options.images)
    from PIL import Image

    from anomalib_folder_ext.demo import calibrated_checkpoint

    calibration = [np.asarray(Image.open(path).convert("RGB")) for path in sorted(folder.iterdir())[:8]]
    checkpoint = calibrated_checkpoint(work / "model.ckpt", calibration)
    print(f"folder + checkpoint: {time.perf_counter() - started:.0f} s", flush=True)

    bench = Bench(work, checkpoint, batch_size=options.batch_sizes[0])
    rows, problems = [], []
    for batch in options.batch_sizes:
        bench.batch_size = batch
        for precision in options.precisions:
            print(f"running: {precision}, batch {batch} ...", flush=True)
            timed = bench.ours(folder, precision, tag=f"gpu_b{batch}", extra=["--trainer.accelerator", accelerator])
            out = work / f"gpu_b{batch}_{precision}_{folder.name}" / "results"
            problems += check_outputs(out, options.images)
            bare = bare_model_images_per_s(checkpoint, precision, True, batch, 20 if device == "cuda" else 1, device=device)
            rows.append([batch, precision, timed, loop_images_per_s(out), bare, out])

    name = torch.cuda.get_device_name(0) if device == "cuda" else "none (--cpu_smoke: CPU numbers)"
    print()
    print(f"GPU: {name}; {os.cpu_count()} CPUs; torch {torch.__version__}; {options.images} images 256x256 PNG; "
          f"NPY + PNG + summary; {time.perf_counter() - started:.0f} s in all")
    print()
    print("| batch | precision | wall s (with start-up) | images/s (with start-up) | images/s (predict loop) "
          "| bare model images/s | loop / bare | max abs map diff vs 32-true | max score rel. diff |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for batch, precision, timed, loop, bare, out in rows:
        reference = next((r[5] for r in rows if r[0] == batch and r[1] == "32-true"), None)
        error = map_error(reference, out) if reference is not None and reference != out else (0.0, 0.0, 0)
        print(f"| {batch} | {precision} | {timed.seconds:.1f} | {options.images / timed.seconds:.0f} | {loop:.0f} "
              f"| {bare:.0f} | {loop / bare:.2f} | {error[0]:.2e} | {error[1]:.2e} |")
    for problem in problems:
        print(f"FAIL: {problem}", file=sys.stderr)
    print("gpu_benchmark: " + ("FAILED" if problems else "all outputs present and valid"))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
