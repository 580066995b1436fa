"""Exported runtimes on this CPU against the torch checkpoint, side by side in one run.

    .venv/bin/python benchmarks/exported.py                  # about 10 min on 2 cores
    .venv/bin/python benchmarks/exported.py --demo .demo     # + image/pixel AUROC on the demo (make run)
    .venv/bin/python benchmarks/exported.py --quick          # a smoke run (numbers meaningless)

One generated folder of 256x256 PNGs and one EfficientAd-S checkpoint made here (offline), exported
by ``anomalib-folder export`` as OpenVINO fp32 and int8 (calibrated on the folder) and as ONNX.
Each row is a real ``anomalib predict --config configs/folder.yaml`` run (``--config
configs/exported.yaml`` for an export), on a small and a large folder; images/s is the steady state
on the predict loop's own clock (``loop_s`` of the finished record): ``(N_large - N_small) /
(loop_large - loop_small)``. "bare" is the network alone in this process, batch 8, no data loading
or writing. "map error" is the largest difference of the written per-image maps (0-1) to torch
fp32's on the small folder. bf16 rows run only on CPUs with AVX512-BF16 or AMX. Nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import Bench, bare_model, link_subset, make_folder, map_error, print_table
from PIL import Image
from throughput import cpu_bf16_instructions

REPO = Path(__file__).resolve().parents[1]


def bare_exported(model_dir: Path, precision: str, batch: int, batches: int) -> float:
    """The exported graph alone on its runtime, compiled as a run compiles it."""
    from anomalib_folder_ext.models.exportedmodel import ExportedModel
    from anomalib_folder_ext.models.runtimes import default_threads

    model = ExportedModel(str(model_dir))
    model.runtime.compile(precision, default_threads())
    images = np.random.default_rng(0).random((batch, 3, 256, 256), dtype=np.float32)
    model.runtime.run(images)  # warm-up
    started = time.perf_counter()
    for _ in range(batches):
        model.runtime.run(images)
    return batch * batches / (time.perf_counter() - started)


def demo_auroc(demo: Path, model: str, precision: str, work: Path, bench: Bench) -> tuple[float, float]:
    """Image and pixel AUROC of a run on the demo folder (its painted defects and their masks)."""
    import subprocess

    from anomalib_folder_ext.tools.demo import build, evaluate

    assets = build(demo)
    out = work / f"demo_{Path(model).name}_{precision}"
    command = [str(Path(sys.executable).parent / "anomalib-folder"), "predict", "--model_path", model, "--folder_path", str(assets.predict_folder),
               "--output_dir", str(out), "--precision", precision, "--overwrite", "True"]
    subprocess.run(command, cwd=work, env=bench.env, check=True, capture_output=True)
    scores = evaluate(out, assets.mask_folder)
    return scores["image_auroc"], scores["pixel_auroc"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=16)
    parser.add_argument("--large", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--calibration", type=int, default=64, help="images int8 is calibrated on")
    parser.add_argument("--demo", type=Path, help="the demo's assets (make run: .demo): AUROC per runtime")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--work", type=Path)
    options = parser.parse_args()
    if options.quick:
        options.small, options.large, options.calibration = 2, 4, 4

    work = (options.work or Path(tempfile.mkdtemp(prefix="afe_exported_"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    os.environ["XDG_CACHE_HOME"] = str(work / "cache")
    print(f"benchmark dir: {work}", flush=True)
    images = work / "images"
    make_folder(images, max(options.large, options.calibration))
    folders = {}
    for name, count in (("small", options.small), ("large", options.large), ("calibration", options.calibration)):
        folders[name] = work / f"{name}_{count}"
        link_subset(images, folders[name], count)
    from anomalib_folder_ext.tools.demo import calibrated_checkpoint
    from anomalib_folder_ext.run.export import Parity, export_checkpoint

    calibration = [np.asarray(Image.open(path).convert("RGB")) for path in sorted(images.iterdir())[:8]]
    checkpoint = options.demo / "model.ckpt" if options.demo else calibrated_checkpoint(work / "model.ckpt", calibration)
    exports = {}
    for label, fmt, precision in (("OpenVINO", "openvino", "fp32"), ("OpenVINO int8", "openvino", "int8"),
                                  ("ONNX Runtime", "onnx", "fp32")):
        print(f"exporting: {label} ...", flush=True)
        out = work / f"export_{fmt}_{precision}"
        if (out / "export.json").is_file():  # a rerun in the same --work: the export is kept
            parity = Parity(**json.loads((out / "export.json").read_text())["parity"])
        else:
            _, parity = export_checkpoint(checkpoint, fmt, out, precision, folders["calibration"])
        exports[label] = (out, parity)

    bf16 = bool(cpu_bf16_instructions())
    runs = [("torch", None, "32-true"), *([("torch", None, "bf16-mixed")] if bf16 else []),
            ("OpenVINO", "OpenVINO", "32-true"), *([("OpenVINO", "OpenVINO", "bf16-mixed")] if bf16 else []),
            ("OpenVINO int8", "OpenVINO int8", "32-true"), ("ONNX Runtime", "ONNX Runtime", "32-true")]
    bench = Bench(work, checkpoint, options.batch_size)
    rows, reference, baseline = [], None, None
    for label, export, precision in runs:
        print(f"running: {label} {precision} ...", flush=True)
        extra = ["--config", str(REPO / "configs/exported.yaml"), "--model.init_args.model_path", str(exports[export][0])] if export else []
        tag = label.replace(" ", "_")
        loops = {}
        for size in ("small", "large"):
            loops[size] = bench.ours(folders[size], precision, None, tag, extra).loop_s
        steady = (options.large - options.small) / max(loops["large"] - loops["small"], 1e-9)
        baseline = baseline or steady
        results = work / f"{tag}_{precision}_{folders['small'].name}" / "results"
        reference = reference or results
        error = map_error(reference, results)[0] if results != reference else 0.0
        bare_batches = 1 if options.quick else 6
        bare = (bare_exported(exports[export][0], precision, options.batch_size, bare_batches) if export else
                bare_model(checkpoint, precision, True, options.batch_size, bare_batches).images_per_s)
        auroc = demo_auroc(options.demo, str(exports[export][0]) if export else str(checkpoint), precision, work, bench) \
            if options.demo else None
        rows.append([label, precision, f"{steady:.2f}", f"{steady / baseline:.2f}x", f"{bare:.2f}", f"{error:.1e}",
                     f"{auroc[0]:.3f} / {auroc[1]:.3f}" if auroc else "-"])
    print()
    print_table(["runtime", "precision", "images/s (end to end)", "vs torch fp32", "bare images/s",
                 "map error vs torch fp32", "demo AUROC image / pixel"], rows)
    print()
    print_table(["export", "largest map difference at export", "share of the map range", "largest score difference"],
                [[label, f"{parity.map_difference:.1e}", f"{parity.map_difference / max(parity.map_range, 1e-12):.2%}",
                  f"{parity.score_difference:.1e}"] for label, (_, parity) in exports.items()])
    print(f"\nCPU: {Path('/proc/cpuinfo').read_text().split('model name')[1].split(':')[1].splitlines()[0].strip()}, "
          f"{len(os.sched_getaffinity(0))} cores; bf16 instructions: {', '.join(sorted(cpu_bf16_instructions())) or 'none'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
