"""One call on a lent GPU machine: the predict loop against the bare model and the pipeline's ceiling.

    python benchmarks/gpu_benchmark.py                  # estimated 6-7 min on one H100/H200 (not yet timed there)
    python benchmarks/gpu_benchmark.py --profile        # also: where the main thread's time goes per batch (py-spy)
    python benchmarks/gpu_benchmark.py --cpu_smoke      # checks the script on a CPU: tiny folders, numbers meaningless

Generates 256x256 PNGs and 1024x1024 JPEGs, builds a calibrated EfficientAd-S checkpoint (offline,
random teacher), then runs ``anomalib predict --config configs/folder.yaml`` (NPY + PNG + summary)
as a user would, one subprocess per row:

- per precision (32-true, 16-mixed, bf16-mixed): the predict loop's images/s, start-up and peak GPU
  memory (from the run's finished record, ``.journal/finished.json``), the steady rate (the full
  folder against a fifth of it, on the loop's clock), the bare network's images/s in the same
  precision, layout and batch, and the map error against 32-true;
- the ceiling: the same pipeline with the network replaced by a trivial map (io_ceiling_model.py);
- 1024x1024 JPEGs, resized by the pre-processor on the GPU;
- torch.compile on the bare model (after warm-up), with its compile time.

Every run's outputs are checked (one CSV row, one float32 NPY in [0, 1] and one PNG per image);
the exit code is 1 if a check fails. Nothing here asserts a speed: the table is the result.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
from common import (
    BIN,
    REPO,
    Bench,
    bare_model,
    finished_record,
    link_subset,
    make_folder,
    map_error,
    print_table,
)

PRECISIONS = ("32-true", "16-mixed", "bf16-mixed")
CEILING_MODEL = "io_ceiling_model.TrivialMapEfficientAd"


def check_outputs(out: Path, images: int, size: tuple[int, int] = (256, 256)) -> list[str]:
    """One CSV row, one float32 NPY in [0, 1] (sampled) and one PNG per image."""
    from anomalib_folder_ext.outputs.summary import read_results

    problems = []
    rows = read_results(out) if (out / "results.csv").exists() else []
    if len(rows) != images or len({row["image"] for row in rows}) != images:
        problems.append(f"{out.parent.name}: {len(rows)} CSV rows for {images} images")
    for row in rows[:: max(1, len(rows) // 50)]:
        array = np.load(out / row["npy"])
        if array.dtype != np.float32 or array.shape != size or array.min() < 0 or array.max() > 1:
            problems.append(f"{out.parent.name}/{row['npy']}: {array.dtype} {array.shape} [{array.min()}, {array.max()}]")
        if not (out / row["png"]).is_file():
            problems.append(f"{out.parent.name}: missing {row['png']}")
    return problems


def run_numbers(out: Path) -> dict[str, float]:
    """The loop's images/s, start-up s and peak GPU MiB (the largest of any rank), from the run's
    finished record; NaN where it has none."""
    record = finished_record(out)
    nan = float("nan")
    loop_s = record["loop_s"]
    gpu = [rank["gpu_mib"] for rank in record["ranks"] if rank.get("gpu_mib") is not None]
    return {"loop": record["predicted"] / loop_s if loop_s else nan, "loop_s": loop_s if loop_s else nan,
            "startup": nan if record["startup_s"] is None else record["startup_s"], "gpu_mib": max(gpu, default=nan)}


# Where a main-thread stack is, judged from its innermost frame that names a predict-loop step.
PROFILE_STEPS = (
    ("batch_to_device", "copy to the device + uint8 to float"),
    ("on_predict_batch_start", "callbacks before the forward (pre-processor)"),
    ("predict_step", "forward (launch, or waiting for the device)"),
    ("on_predict_batch_end", "callbacks after the forward (writer, post-processor)"),
    ("__next__", "waiting for the next batch (workers, pinning)"),
)


def profile_table(raw_profile: Path, rate: int, batches: int) -> list[tuple[str, float]]:
    """ms per batch of the main thread by step, from a ``py-spy record --format raw --idle`` file."""
    per_step: Counter[str] = Counter()
    for line in raw_profile.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if "prediction_loop.py" not in stack or not count.isdigit():
            continue  # another thread or process: writer threads, decode workers, the pin thread
        frames = stack.split(";")
        step = "the loop's own bookkeeping"
        for frame in reversed(frames):
            name = frame.split(" (", 1)[0].rsplit(".", 1)[-1]  # "Strategy.batch_to_device" -> "batch_to_device"
            match = next((label for marker, label in PROFILE_STEPS if name == marker), None)
            if match:
                step = match
                break
        per_step[step] += int(count)
    return [(step, 1000 * samples / rate / max(batches, 1)) for step, samples in per_step.most_common()]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3000, help="256x256 PNGs")
    parser.add_argument("--jpegs", type=int, default=1000, help="1024x1024 JPEGs (0: skip)")
    parser.add_argument("--batch_size", type=int, default=64)
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS))
    parser.add_argument("--fast_precision", default="bf16-mixed", help="precision of the ceiling, JPEG and profile runs")
    parser.add_argument("--no_compile", action="store_true", help="skip the torch.compile measurement")
    parser.add_argument("--profile", action="store_true", help="py-spy the predict loop's main thread (needs py-spy)")
    parser.add_argument("--work", type=Path, default=None, help="scratch dir (default: a temp dir)")
    parser.add_argument("--cpu_smoke", action="store_true", help="run on the CPU, tiny, to check the script itself")
    options = parser.parse_args()
    if options.cpu_smoke:
        options.images, options.jpegs, options.batch_size = 16, 4, 8
        options.precisions, options.fast_precision = ["32-true", "bf16-mixed"], "32-true"

    work = (options.work or Path(tempfile.mkdtemp(prefix="afe_gpu_"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    os.environ["XDG_CACHE_HOME"] = str(work / "cache")
    import torch

    device, accelerator = ("cpu", "cpu") if options.cpu_smoke else ("cuda", "gpu")
    if device == "cuda" and not torch.cuda.is_available():
        print("gpu_benchmark: no CUDA device visible", file=sys.stderr)
        return 1
    started = time.perf_counter()
    pngs, jpegs = work / f"png256_{options.images}", work / f"jpeg1024_{options.jpegs}"
    make_folder(pngs, options.images)
    if options.jpegs:
        make_folder(jpegs, options.jpegs, size=1024, fmt="JPEG")
    from PIL import Image

    from anomalib_folder_ext.tools.demo import calibrated_checkpoint

    calibration = [np.asarray(Image.open(path).convert("RGB")) for path in sorted(pngs.iterdir())[:8]]
    checkpoint = calibrated_checkpoint(work / "model.ckpt", calibration)
    print(f"folders + checkpoint: {time.perf_counter() - started:.0f} s", flush=True)

    bench = Bench(work, checkpoint, batch_size=options.batch_size)
    extra = ["--trainer.accelerator", accelerator]
    bare_batches = 30 if device == "cuda" else 1
    problems: list[str] = []
    precision_rows, other_rows = [], []

    def ours(folder: Path, precision: str, tag: str, model_class: str | None = None) -> Path:
        print(f"running: {tag} {precision} ...", flush=True)
        bench.ours(folder, precision, model_class=model_class, tag=tag, extra=extra)
        return work / f"{tag}_{precision}_{folder.name}" / "results"

    # A fifth of the folder as well: the difference of the two loop times is the steady rate, without
    # the first batches' warm-up (cuDNN autotuning, allocator growth), which a 2-second loop would feel.
    few = max(options.batch_size, options.images // 5)
    pngs_few = work / f"png256_{few}"
    link_subset(pngs, pngs_few, few)

    def steady(tag: str, precision: str, model_class: str | None = None) -> tuple[dict[str, float], Path]:
        out = ours(pngs, precision, tag, model_class)
        problems.extend(check_outputs(out, options.images))
        numbers = run_numbers(out)
        short = run_numbers(ours(pngs_few, precision, tag, model_class))
        numbers["steady"] = (options.images - few) / max(numbers["loop_s"] - short["loop_s"], 1e-9)
        return numbers, out

    for precision in options.precisions:
        numbers, out = steady("ours", precision)
        bare = bare_model(checkpoint, precision, True, options.batch_size, bare_batches, device=device)
        precision_rows.append((precision, numbers, bare.images_per_s, out))

    numbers, _ = steady("ceiling", options.fast_precision, CEILING_MODEL)
    other_rows.append(("trivial-map ceiling, 256x256 PNG", options.images, numbers))
    if options.jpegs:
        out = ours(jpegs, options.fast_precision, "jpeg")
        problems += check_outputs(out, options.jpegs)
        numbers = run_numbers(out)
        numbers["steady"] = float("nan")
        other_rows.append(("EfficientAd, 1024x1024 JPEG (resized on the device)", options.jpegs, numbers))

    compiled = []
    if not options.no_compile:
        for precision in (options.fast_precision,):
            print(f"running: torch.compile, bare model, {precision} ...", flush=True)
            eager = bare_model(checkpoint, precision, True, options.batch_size, bare_batches, device=device)
            fast = bare_model(checkpoint, precision, True, options.batch_size, bare_batches, device=device,
                              compile_model=True)
            compiled.append((precision, eager, fast))

    profile = []
    if options.profile:
        profile = run_profile(bench, pngs, options, extra, work)

    name = torch.cuda.get_device_name(0) if device == "cuda" else "none (--cpu_smoke: CPU numbers, meaningless)"
    print()
    print(f"GPU: {name}; {os.cpu_count()} CPUs; torch {torch.__version__}; batch {options.batch_size}; "
          f"NPY + PNG + summary; {time.perf_counter() - started:.0f} s in all")
    print()
    print(f"{options.images} PNGs 256x256:")
    print()
    print(f"steady = ({options.images} - {few}) images / the difference of the two runs' predict-loop times")
    reference = next((row[3] for row in precision_rows if row[0] == "32-true"), None)
    rows = []
    for precision, numbers, bare, out in precision_rows:
        error = map_error(reference, out) if reference is not None and reference != out else (0.0, 0.0, 0)
        rows.append([precision, f"{numbers['loop']:.0f}", f"{numbers['steady']:.0f}", f"{bare:.0f}",
                     f"{numbers['steady'] / bare:.2f}", f"{numbers['startup']:.1f}", f"{numbers['gpu_mib']:.0f}",
                     f"{error[0]:.2e}", f"{error[1]:.2e}"])
    print_table(["precision", "predict loop images/s", "steady images/s", "bare model images/s", "steady / bare",
                 "start-up s", "peak GPU MiB", "max abs map diff vs 32-true", "max score rel. diff"], rows)
    print_table([f"run ({options.fast_precision})", "images", "predict loop images/s", "steady images/s", "start-up s",
                 "peak GPU MiB"],
                [[label, count, f"{n['loop']:.0f}", f"{n['steady']:.0f}", f"{n['startup']:.1f}", f"{n['gpu_mib']:.0f}"]
                 for label, count, n in other_rows])
    if compiled:
        print_table(["bare model", "eager images/s", "torch.compile images/s", "speed-up", "compile s (first call)"],
                    [[f"{precision}, batch {options.batch_size}, channels_last", f"{eager.images_per_s:.0f}",
                      f"{fast.images_per_s:.0f}", f"{fast.images_per_s / eager.images_per_s:.2f}",
                      f"{fast.first_call_s:.1f}"] for precision, eager, fast in compiled])
    if profile:
        print()
        print(f"Main thread of the predict loop ({options.fast_precision}, py-spy --idle), ms per batch of {options.batch_size}:")
        print_table(["step", "ms / batch"], [[step, f"{ms:.1f}"] for step, ms in profile])
    for problem in problems:
        print(f"FAIL: {problem}", file=sys.stderr)
    print("gpu_benchmark: " + ("FAILED" if problems else "all outputs present and valid"))
    return 1 if problems else 0


def run_profile(bench: Bench, folder: Path, options: argparse.Namespace, extra: list[str], work: Path) -> list:
    """One more run of the fast precision under ``py-spy record``; the main thread's time per step."""
    py_spy = BIN / "py-spy"
    if not py_spy.exists():
        print("gpu_benchmark: --profile needs py-spy in this environment (pip install py-spy); skipped", file=sys.stderr)
        return []
    rate = 250
    raw = work / "profile.txt"
    command, out = bench.ours_command(folder, options.fast_precision, tag="profile", extra=extra)
    command = [str(py_spy), "record", "--format", "raw", "--idle", "--rate", str(rate), "-o", str(raw), "--", *command]
    print("running: py-spy record ...", flush=True)
    with (out / "py-spy.log").open("w") as log:
        subprocess.run(command, cwd=REPO, env=bench.env, stdout=log, stderr=subprocess.STDOUT, check=False)
    if not raw.exists():
        print(f"gpu_benchmark: py-spy wrote no profile; see {out / 'py-spy.log'}", file=sys.stderr)
        return []
    batches = -(-options.images // options.batch_size)
    return profile_table(raw, rate, batches)


if __name__ == "__main__":
    sys.exit(main())
