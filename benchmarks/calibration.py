"""Calibration against held-out parts: does the stated false-positive bound hold, and what does it cost in recall?

    .venv/bin/python benchmarks/calibration.py                  # brick (the demo model) and gravel: ~15 min on 2 cores
    .venv/bin/python benchmarks/calibration.py --textures brick --good 120 --held_out 100 --defects 20   # quicker

For each texture (a photograph bundled with scikit-image, as the demo uses): an EfficientAd-S trained
here offline as the demo trains it (``make run``'s model for brick when ``.demo/`` has it), then
``--good`` good crops to calibrate on, ``--held_out`` other good crops and ``--defects`` crops with a
painted defect (scratch, blob, crack, stain, in turn; each with its mask), drawn with their own seeds.

1. ``anomalib-folder calibrate --good_folder good --defect_folder defects --mask_folder masks
   --target_fpr 0.01`` (each a real subprocess): the thresholds, the expected rate and its 95 % bound,
   the recall on the defects.
2. ``anomalib-folder predict --calibration`` on the held-out good parts: the measured false-positive
   rate (parts decided ``defect``), against the bound.
3. The checkpoint's own image threshold (anomalib's validation) on the same parts, for comparison.

The good crops overlap each other and the training crops (random 256x256 crops of one 512x512
photograph), as a production line's parts resemble each other; the bound assumes only that the held-out
parts are drawn like the calibration's. Everything goes into one temp dir, deleted unless ``--keep``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from common import BIN, REPO, journal_rows, print_table, run_timed, scratch, subprocess_env

TEXTURES = {"brick": "brick", "gravel": "gravel"}


def write_parts(folder: Path, material: np.ndarray, count: int, seed: int, defects: bool = False,
                masks: Path | None = None) -> None:
    from PIL import Image

    from anomalib_folder_ext.tools import demo

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    if masks is not None:
        masks.mkdir(parents=True)
    for index in range(count):
        image = demo.random_crop(material, rng)
        if defects:
            image, mask = demo.paint_defect(image, demo.DEFECT_KINDS[index % len(demo.DEFECT_KINDS)], rng)
            Image.fromarray(mask).save(masks / f"part_{index:04d}.png")
        Image.fromarray(image).save(folder / f"part_{index:04d}.png")


def model_for(texture: str, work: Path) -> tuple[Path, np.ndarray, Path]:
    """The texture's model (trained here as the demo trains; brick: the demo's own when built) and material."""
    from skimage import data

    from anomalib_folder_ext.tools import demo

    gray = getattr(data, TEXTURES[texture])()
    material = np.repeat(gray[..., None], 3, axis=2) if gray.ndim == 2 else gray[..., :3]
    built = REPO / ".demo" / "model.ckpt"
    if texture == "brick" and built.is_file():
        return built, material, REPO / ".demo" / "cache"
    root = work / f"model_{texture}"
    demo.texture = lambda: material  # the demo's dataset and training, on this material
    demo.write_dataset(root / "data")
    started = time.perf_counter()
    checkpoint = demo.train(root)
    print(f"{texture}: trained in {time.perf_counter() - started:.0f} s", flush=True)
    return checkpoint, material, root / "cache"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--textures", nargs="+", default=list(TEXTURES), choices=list(TEXTURES))
    parser.add_argument("--good", type=int, default=150)
    parser.add_argument("--held_out", type=int, default=300)
    parser.add_argument("--defects", type=int, default=60)
    parser.add_argument("--target_fpr", type=float, default=0.01)
    parser.add_argument("--keep", action="store_true")
    options = parser.parse_args()
    rows = []
    with scratch("calibration_bench_", options.keep) as work:
        for texture in options.textures:
            checkpoint, material, cache = model_for(texture, work)
            parts = work / texture
            write_parts(parts / "good", material, options.good, seed=101)
            write_parts(parts / "held_out", material, options.held_out, seed=202)
            write_parts(parts / "defects", material, options.defects, seed=303, defects=True, masks=parts / "masks")
            env = subprocess_env(work, XDG_CACHE_HOME=str(cache), PYTHONWARNINGS="ignore")
            started = time.perf_counter()
            run_timed([str(BIN / "anomalib-folder"), "calibrate", "--model_path", str(checkpoint), "--good_folder",
                 str(parts / "good"), "--defect_folder", str(parts / "defects"), "--mask_folder", str(parts / "masks"),
                 "--target_fpr", str(options.target_fpr), "--out", str(parts / "calibration.json")], REPO, env,
                      parts / "calibrate.log")
            run_timed([str(BIN / "anomalib-folder"), "predict", "--model_path", str(checkpoint), "--folder_path",
                 str(parts / "held_out"), "--output_dir", str(parts / "held_out_results"), "--calibration",
                 str(parts / "calibration.json"), "--save_as_image", "False"], REPO, env, parts / "predict.log")
            print(f"{texture}: {options.good + options.held_out + options.defects} parts predicted in "
                  f"{time.perf_counter() - started:.0f} s", flush=True)
            calibration = json.loads((parts / "calibration.json").read_text())
            with (parts / "held_out_results" / "results.csv").open() as handle:
                decided = [row["decision"] for row in csv.DictReader(handle) if row["status"] == "ok"]
            held_out = [row.score for row in journal_rows(parts / "held_out_results") if row.status == "ok"]
            defects = [row.score for row in journal_rows(parts / "calibration_runs" / "defect") if row.status == "ok"]
            own = calibration["checkpoint_thresholds"].get("image")
            good = calibration["good"]
            rows.append([
                texture, good["n"], f"{calibration['image_threshold']:.4g}", f"{good['expected_fpr']:.4f}",
                f"{good['fpr_upper']:.4f}", f"{decided.count('defect') / len(decided):.4f} ({len(decided)})",
                f"{calibration['defect']['recall']:.3f}", f"{calibration['defect']['image_auroc']:.3f}",
                f"{own:.4g}" if own is not None else "none",
                f"{np.mean(np.asarray(held_out) >= own):.4f}" if own is not None else "",
                f"{np.mean(np.asarray(defects) >= own):.3f}" if own is not None else "",
                f"{calibration['defect']['pixels']['auroc']:.3f}",
            ])
        print(f"\ntarget false-positive rate {options.target_fpr:g}; {options.defects} painted defects per texture; "
              f"{os.cpu_count()} CPUs")
        print_table(["texture", "good parts", "image threshold", "expected FPR", "95% bound", "FPR held out (n)",
                     "recall", "image AUROC", "checkpoint threshold", "its FPR held out", "its recall", "pixel AUROC"],
                    rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
