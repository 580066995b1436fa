"""Throughput on this machine: stock ``anomalib predict`` against ours, the bare model, the I/O ceiling.

    .venv/bin/python benchmarks/throughput.py           # the full table: about 13 min on 2 cores
    .venv/bin/python benchmarks/throughput.py --quick   # a smoke run on tiny folders (numbers meaningless)

Everything runs on one generated folder of 256x256 PNGs and one EfficientAd-S checkpoint made here
(offline: random teacher, calibrated on the same kind of images), in one run, so the ratios compare
like with like. Each pipeline is a real subprocess, exactly as a user starts it:

- stock:   ``anomalib predict --model anomalib.models.EfficientAd --data F --ckpt_path C``
- ours:    ``anomalib predict --config configs/folder.yaml --config <folder, output, precision>``
- ceiling: ours with ``io_ceiling_model.TrivialMapEfficientAd`` (the network replaced by a trivial map)

Steady-state images/s removes start-up (imports, checkpoint, workers): each pipeline runs on a
small and a large folder and ``(N_large - N_small) / (t_large - t_small)`` is reported, on the wall
clock and, for our pipeline, on its own predict-loop clock (``loop_s`` of the finished record,
``.journal/finished.json``: first batch to last file written; it also cancels the first batch's
warm-up, and is what the ratios use where it exists). Peak RSS is
the main process's high-water mark (``VmHWM``). The bare model is timed in this process: the checkpoint's
network, batch 8, in the same precision, no data loading or writing. Benchmarks are not tests:
nothing here asserts.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from common import Bench, Timed, bare_model, link_subset, make_folder, map_error
from PIL import Image

BF16_FLAGS = {"avx512_bf16", "amx_bf16"}


@dataclass
class Steady:
    """Two runs of one pipeline, small and large folder."""

    small: Timed
    large: Timed
    n_small: int
    n_large: int

    @property
    def images_per_s(self) -> float:
        return (self.n_large - self.n_small) / max(self.large.seconds - self.small.seconds, 1e-9)

    @property
    def startup_s(self) -> float:
        return max(self.small.seconds - self.n_small / self.images_per_s, 0.0)

    @property
    def loop_images_per_s(self) -> float | None:
        """The same difference on the predict loop's own clock: no process start-up noise, and the
        first batch's warm-up (oneDNN, autotuning) cancels out. Our pipeline only."""
        if self.small.loop_s is None or self.large.loop_s is None:
            return None
        return (self.n_large - self.n_small) / max(self.large.loop_s - self.small.loop_s, 1e-9)

    @property
    def best_images_per_s(self) -> float:
        return self.loop_images_per_s or self.images_per_s


def cpu_bf16_instructions() -> set[str]:
    """The CPU's bf16 instruction sets (AVX512-BF16, AMX); without them torch emulates bf16, slowly."""
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return set()
    return BF16_FLAGS.intersection(flags)


def png_levels(maps: list[np.ndarray], levels: tuple[int, ...] = (0, 1, 3, 6, 9)) -> list[tuple[int, float, float, float, float]]:
    """Per zlib level: ms and KB per image for the palette PNG we write and for an RGB PNG of the same colours."""
    import torch

    from anomalib_folder_ext.outputs import artifacts
    from anomalib_folder_ext.outputs.maps import process_maps

    lut = artifacts.colormap_lut("jet")
    quantized = [process_maps(torch.from_numpy(m)).levels[0].numpy() for m in maps]
    rows = []
    for level in levels:
        timings = []
        for encode in (lambda q: artifacts.encode_png(q, level, palette=lut),
                       lambda q: artifacts.encode_png(artifacts.colorize(q, lut), level)):
            started = time.perf_counter()
            sizes = [len(encode(q)) for q in quantized]
            timings += [1000 * (time.perf_counter() - started) / len(quantized), statistics.mean(sizes) / 1024]
        rows.append((level, *timings))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=16, help="images in the small folder (model runs)")
    parser.add_argument("--large", type=int, default=64, help="images in the large folder (model runs)")
    parser.add_argument("--io_small", type=int, default=1000, help="small folder of the I/O-ceiling runs")
    parser.add_argument("--io_large", type=int, default=10000, help="large folder of the I/O-ceiling runs")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--error_images", type=int, default=4, help="images for the bf16 map-error run")
    parser.add_argument("--precisions", nargs="+", default=None,
                        help="end-to-end precisions (default: 32-true, plus bf16-mixed if the CPU has bf16 instructions)")
    parser.add_argument("--no_stock", action="store_true", help="skip stock anomalib predict")
    parser.add_argument("--repeats", type=int, default=2, help="runs of ours and of the bare model; the fastest counts")
    parser.add_argument("--quick", action="store_true", help="tiny folders: checks that the script runs")
    parser.add_argument("--work", type=Path, default=None, help="scratch dir (default: a new temp dir)")
    options = parser.parse_args()
    if options.quick:
        options.small, options.large, options.io_small, options.io_large, options.error_images = 2, 4, 8, 24, 1
        options.repeats = 1

    work = (options.work or Path(tempfile.mkdtemp(prefix="afe_bench_"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    os.environ["XDG_CACHE_HOME"] = str(work / "cache")  # before anomalib loads: the random teacher stays here
    bf16_isa = cpu_bf16_instructions()
    precisions = options.precisions or (["32-true", "bf16-mixed"] if bf16_isa else ["32-true"])
    print(f"benchmark dir: {work}", flush=True)

    started = time.perf_counter()
    images = work / "images"
    make_folder(images, max(options.large, options.io_large))
    folders = {}
    for name, count in (("small", options.small), ("large", options.large),
                        ("io_small", options.io_small), ("io_large", options.io_large)):
        folders[name] = work / f"{name}_{count}"
        link_subset(images, folders[name], count)
    from anomalib_folder_ext.tools.demo import calibrated_checkpoint

    calibration = [np.asarray(Image.open(path).convert("RGB")) for path in sorted(images.iterdir())[:8]]
    checkpoint = calibrated_checkpoint(work / "model.ckpt", calibration)
    print(f"folders and checkpoint: {time.perf_counter() - started:.0f} s", flush=True)

    bench = Bench(work, checkpoint, options.batch_size)
    n_small, n_large = options.small, options.large
    results: list[tuple[str, str, Steady | None, str]] = []

    def measure(
        label: str, precision: str, run, small: Path, large: Path, n0: int, n1: int, note: str = "", repeats: int = 1
    ) -> Steady:
        """The fastest of ``repeats`` runs of each folder size: this machine's neighbours come and go."""
        print(f"running: {label} {precision} ...", flush=True)
        smalls, larges = zip(*[(run(small), run(large)) for _ in range(repeats)])
        fastest = lambda timings: min(timings, key=lambda t: t.loop_s if t.loop_s is not None else t.seconds)  # noqa: E731
        steady = Steady(fastest(smalls), fastest(larges), n0, n1)
        results.append((label, precision, steady, note + (f" (fastest of {repeats})" if repeats > 1 else "")))
        return steady

    stock = None
    if not options.no_stock:
        stock = measure("stock anomalib predict", "32-true", bench.stock, folders["small"], folders["large"],
                        n_small, n_large, "batch 1, its visualizer on (the defaults)")
    ours = {}
    for precision in precisions:
        ours[precision] = measure("ours: NPY + PNG + summary", precision, lambda f, p=precision: bench.ours(f, p),
                                  folders["small"], folders["large"], n_small, n_large,
                                  f"batch {options.batch_size}, channels_last, configs/folder.yaml", options.repeats)
    trivial = "io_ceiling_model.TrivialMapEfficientAd"
    ceiling = measure("ours, I/O ceiling (trivial map)", "32-true",
                      lambda f: bench.ours(f, "32-true", trivial, "ceiling"),
                      folders["io_small"], folders["io_large"], options.io_small, options.io_large,
                      f"batch {options.batch_size}: decode + uint8 to float + normalise + NPY + PNG + CSV")
    measure("ours, I/O ceiling (trivial map)", "32-true",
            lambda f: bench.ours(f, "32-true", trivial, "ceiling_b32", ["--data.init_args.batch_size", "32"]),
            folders["io_small"], folders["io_large"], options.io_small, options.io_large,
            "the same, batch 32 (per-batch costs of the loop shared by 4x more images)")
    measure("ours, I/O ceiling (trivial map)", "32-true",
            lambda f: bench.ours(f, "32-true", trivial, "ceiling_passive", env={"OMP_WAIT_POLICY": "PASSIVE"}),
            folders["io_small"], folders["io_large"], options.io_small, options.io_large,
            f"batch {options.batch_size}, OMP_WAIT_POLICY=PASSIVE (torch's idle threads stop spinning)")

    # What each option of the writer costs where it shows most: on the I/O ceiling, against its default row.
    option_rows = {}
    for option, value, note in (
        ("normalization", "model", "anomalib's pixel normalisation instead of per-image min-max"),
        ("map_size", "original", "256x256 images: equal to the model's size, so this measures the bookkeeping only"),
        ("save_overlay", "true", "+ <stem>_overlay.jpg: the image read again, blended, JPEG-encoded"),
        ("report", "true", "+ report.html and report.png at the end (per run, not per image)"),
    ):
        option_rows[option] = measure(
            f"ours, I/O ceiling, {option}: {value}", "32-true",
            lambda f, o=option, v=value: bench.ours(f, "32-true", trivial, f"ceiling_{o}",
                                                    [f"--trainer.callbacks.init_args.{o}", v]),
            folders["io_small"], folders["io_large"], options.io_small, options.io_large, note)

    # Map error of each mixed precision against 32-true, through the real pipeline. Where bf16 is
    # emulated (slow), a few images are enough: they are compared with the 32-true run's maps.
    errors = {}
    reference = work / f"ours_32-true_{folders['small'].name}" / "results"
    error_folder = work / f"error_{options.error_images}"
    link_subset(images, error_folder, options.error_images)
    for precision in ("bf16-mixed",):
        print(f"running: map error of {precision} on {options.error_images} images ...", flush=True)
        bench.ours(error_folder, precision, tag="error")
        errors[precision] = map_error(reference, work / f"error_{precision}_{error_folder.name}" / "results")

    print("running: bare model ...", flush=True)
    bare = {}
    bare_batches = 1 if options.quick else 6
    for precision in sorted({"32-true", "bf16-mixed"} | set(precisions)):
        fast = precision in precisions  # bf16 without bf16 instructions: one small batch is enough to show it
        batch, batches = (options.batch_size, bare_batches) if fast else (1, 1)
        rate = max(bare_model(checkpoint, precision, True, batch, batches).images_per_s for _ in range(options.repeats))
        bare[(precision, True)] = (rate, batch)
    bare[("32-true", False)] = (bare_model(checkpoint, "32-true", False, options.batch_size, bare_batches).images_per_s,
                                options.batch_size)

    maps = [np.load(path) for path in sorted((work / f"ours_32-true_{folders['large'].name}" / "results").glob("*.npy"))]
    levels = png_levels(maps[:50]) if maps else []

    print()
    print(f"machine: {os.cpu_count()} CPUs ({_cpu_name()}), bf16 instructions: {', '.join(sorted(bf16_isa)) or 'none'}; "
          f"torch {__import__('torch').__version__}; {time.perf_counter() - started:.0f} s in all")
    print(f"steady state from {n_small} vs {n_large} images (I/O ceiling: {options.io_small} vs {options.io_large}), 256x256 PNG")
    print()
    print("| pipeline | precision | images/s (steady, wall) | images/s (steady, loop) | start-up s "
          "| peak RSS MB (small / large folder) | notes |")
    print("|---|---|---:|---:|---:|---:|---|")
    for label, precision, steady, note in results:
        loop = f"{steady.loop_images_per_s:.2f}" if steady.loop_images_per_s else ""
        print(f"| {label} | {precision} | {steady.images_per_s:.2f} | {loop} | {steady.startup_s:.1f} "
              f"| {steady.small.peak_rss_mb:.0f} / {steady.large.peak_rss_mb:.0f} | {note} |")
    for (precision, channels_last), (rate, batch) in sorted(bare.items()):
        layout = "channels_last" if channels_last else "NCHW"
        note = "" if precision in precisions else "not run end to end: no bf16 instructions on this CPU"
        print(f"| bare model (batch {batch}, {layout}) | {precision} | {rate:.2f} | | | | {note} |")
    print()
    print("| ratio | value | target |")
    print("|---|---:|---:|")
    for precision, steady in ours.items():
        if stock is not None:
            print(f"| ours {precision} / stock 32-true (wall clock, both) | {steady.images_per_s / stock.images_per_s:.2f} "
                  f"| >= 3.3 (bf16) |")
        print(f"| ours {precision} (loop) / bare model {precision} | "
              f"{steady.best_images_per_s / bare[(precision, True)][0]:.2f} | >= 0.95 |")
    print(f"| I/O ceiling images/s (batch {options.batch_size}, loop) | {ceiling.best_images_per_s:.0f} | >= 250 |")
    for option, steady in option_rows.items():
        print(f"| I/O ceiling with {option} / default | {steady.best_images_per_s / ceiling.best_images_per_s:.2f} | |")
    print(f"| peak RSS {options.io_large} / {options.io_small} images | "
          f"{ceiling.large.peak_rss_mb / ceiling.small.peak_rss_mb:.2f} | <= 1.1 |")
    print()
    print("| precision | max abs difference of the normalised maps vs 32-true | max relative score difference | images |")
    print("|---|---:|---:|---:|")
    for precision, (map_difference, score_difference, count) in errors.items():
        print(f"| {precision} | {map_difference:.2e} | {score_difference:.2e} | {count} |")
    if levels:
        print()
        print("| PNG compress_level | palette PNG (written) ms / image | KB / image | RGB PNG ms / image | KB / image |")
        print("|---:|---:|---:|---:|---:|")
        for level, ms, kb, rgb_ms, rgb_kb in levels:
            print(f"| {level} | {ms:.2f} | {kb:.0f} | {rgb_ms:.2f} | {rgb_kb:.0f} |")
    return 0


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


if __name__ == "__main__":
    sys.exit(main())
