"""The decision on a real checkpoint and real files: calibrate on good parts, predict with the calibration,
a threshold given by flag, masks that are the raw map at the pixel threshold, refusals in one line."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from conftest import run_here, textured_image, write_images

pytestmark = pytest.mark.slow


def write_defects(folder: Path, masks: Path, count: int, seed: int) -> None:
    """Textured parts with a bright square pasted on each, and the square as the mask (<stem>_mask.png)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    masks.mkdir(parents=True)
    for index in range(count):
        image = textured_image(rng, 128, 128)
        mask = np.zeros((128, 128), dtype=bool)
        top, left = rng.integers(16, 80, size=2)
        mask[top:top + 32, left:left + 32] = True
        image[mask] = rng.integers(200, 256, size=(int(mask.sum()), 3), dtype=np.uint8)
        Image.fromarray(image).save(folder / f"defect_{index}.png")
        Image.fromarray(mask).save(masks / f"defect_{index}_mask.png")


@pytest.fixture(scope="module")
def calibrated(checkpoint, tmp_path_factory):
    root = tmp_path_factory.mktemp("decision")
    write_images(root / "good", {f"good_{index:02d}.png": ((128, 128), "PNG") for index in range(20)}, seed=11)
    write_defects(root / "defect", root / "masks", 4, seed=12)
    write_images(root / "line", {f"part_{index}.png": ((128, 128), "PNG") for index in range(4)}, seed=13)
    write_defects(root / "line_defects", root / "line_masks", 2, seed=14)
    for path in (root / "line_defects").iterdir():
        path.rename(root / "line" / path.name)
    result = run_here(["anomalib-folder", "calibrate", "--model_path", str(checkpoint), "--good_folder", "good",
                       "--defect_folder", "defect", "--mask_folder", "masks", "--target_fpr", "0.05",
                       "--uncertain_fpr", "0.3", "--out", "calibration.json"], cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    return root, result


def journal_rows(output_dir: Path) -> dict[str, dict]:
    """Every row the run journaled, with its full-precision numbers."""
    rows = {}
    for path in sorted((output_dir / ".journal").glob("rank*.jsonl")):
        for line in path.read_text().splitlines():
            values = json.loads(line)
            if "image" in values:
                rows[values["image"]] = values
    return rows


def test_calibrate_fits_at_the_target_rate_and_says_what_20_parts_can_show(calibrated):
    root, result = calibrated
    calibration = json.loads((root / "calibration.json").read_text())
    good = sorted(row["score"] for row in journal_rows(root / "calibration_runs" / "good").values())
    assert len(good) == 20 and calibration["good"]["n"] == 20
    # the lowest threshold with (n - r + 1) / (n + 1) <= 0.05: r = 20, just above the largest good score
    assert good[-1] < calibration["image_threshold"] <= np.nextafter(good[-1], np.inf)
    assert calibration["good"]["expected_fpr"] == pytest.approx(1 / 21)
    assert calibration["good"]["fpr_upper"] == pytest.approx(1 - 0.05 ** (1 / 20))
    assert good[14] < calibration["uncertain_below"] <= np.nextafter(good[14], np.inf)  # r = ceil(21 * 0.7) = 15th
    assert calibration["pixel_threshold"] <= calibration["image_threshold"]
    assert calibration["model"]["runtime"] == "torch" and calibration["model"]["precision"] == "32-true"
    assert calibration["model"]["image_size"] == [256, 256] and len(calibration["model"]["identity"]) == 64
    defect = calibration["defect"]
    assert defect["n"] == 4 and 0 <= defect["recall"] <= 1 and 0 <= defect["image_auroc"] <= 1
    assert defect["pixels"]["images"] == 4 and defect["pixels"]["missing_masks"] == 0
    lines = result.stdout.strip().splitlines()
    assert lines[-1].startswith("calibration.json: image threshold ") and "use: --calibration calibration.json" in lines[-1]
    assert any(line.strip().startswith("image (calibrated)") for line in lines)


def test_predict_with_the_calibration_decides_every_part_by_the_rule_and_masks_are_the_raw_map_at_its_threshold(
        calibrated):
    root, _ = calibrated
    calibration = json.loads((root / "calibration.json").read_text())
    image_threshold, pixel, band = (calibration[key] for key in ("image_threshold", "pixel_threshold", "uncertain_below"))
    result = run_here(["anomalib-folder", "predict", "--model_path", str(Path(calibration["model"]["path"])),
                       "--folder_path", "line", "--output_dir", "line_out", "--calibration", "calibration.json",
                       "--save_mask", "True", "--normalization", "model"], cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    out = root / "line_out"
    rows = journal_rows(out)
    assert len(rows) == 6
    for name, row in rows.items():
        expected = "defect" if row["score"] >= image_threshold else "uncertain" if row["score"] >= band else "ok"
        assert row["decision"] == expected and row["pred_label"] == (expected == "defect"), name
        mask = np.array(Image.open(out / row["mask"]))
        assert mask.dtype == bool and mask.shape == (256, 256)
        assert row["defect_area"] == int(mask.sum()) and row["defect_fraction"] == pytest.approx(mask.mean())
        assert row["defect_regions"] == ndimage.label(mask, structure=np.ones((3, 3)))[1]
        assert row["decision"] != "defect" or mask.any()  # the rule: a defect's peak is in its mask
    summary = (out / "results_summary.txt").read_text()
    assert f"image threshold   : {image_threshold:.6g} (calibration calibration.json)" in summary
    assert f"pixel threshold   : {pixel:.6g} (calibration calibration.json)" in summary
    with (out / "defective.csv").open() as handle:
        listed = list(csv.DictReader(handle))
    wanted = sorted((row for row in rows.values() if row["decision"] in {"defect", "uncertain"}),
                    key=lambda row: (row["decision"] != "defect", -row["score"]))
    assert [row["image"] for row in listed] == [row["image"] for row in wanted]
    decided = {name: row["decision"] for name, row in rows.items()}
    counts = ", ".join(f"{list(decided.values()).count(kind)} {kind}" for kind in ("defect", "uncertain", "ok")
                       if kind != "uncertain" or "uncertain" in decided.values())
    assert f"6 images, {counts}" in result.stdout.strip().splitlines()[-1]


def test_masks_equal_the_raw_map_at_the_pixel_threshold_at_the_maps_size(calibrated, checkpoint):
    """The raw map from the written NPY (per-image min-max, undone with the journal's raw min and max), at
    the model's size and at the images' own size."""
    root, _ = calibrated
    pixel = json.loads((root / "calibration.json").read_text())["pixel_threshold"]
    for size in ("model", "original"):
        out = root / f"masks_{size}"
        result = run_here(["anomalib-folder", "predict", "--model_path", str(checkpoint), "--folder_path", "line",
                           "--output_dir", out.name, "--pixel_threshold", str(pixel), "--threshold", "1e9",
                           "--save_mask", "True", "--save_as_image", "False", "--map_size", size], cwd=root)
        assert result.returncode == 0, result.stderr[-3000:]
        for name, row in journal_rows(out).items():
            raw = row["raw_min"] + np.load(out / row["npy"]).astype(np.float64) * (row["score"] - row["raw_min"])
            mask = np.array(Image.open(out / row["mask"]))
            assert mask.shape == raw.shape == ((256, 256) if size == "model" else (128, 128))
            near = np.abs(raw - pixel) <= 1e-5 * max(1.0, abs(row["score"]))  # float32 rounding of the NPY
            assert np.array_equal(mask[~near], (raw >= pixel)[~near]), name
            assert row["decision"] == "ok"  # nothing reaches an image threshold of 1e9


def test_a_calibration_of_another_model_precision_or_size_is_refused_before_anything_is_written(calibrated, checkpoint):
    root, _ = calibrated
    calibration = json.loads((root / "calibration.json").read_text())
    calibration["model"]["identity"] = "0" * 64
    (root / "other.json").write_text(json.dumps(calibration))
    for args, words in (
            (["--calibration", "other.json"], "made for another model (000000000000"),
            (["--calibration", "calibration.json", "--precision", "bf16-mixed"], "precision 32-true vs bf16-mixed"),
            (["--calibration", "missing.json"], "calibration missing.json: no such file"),
            (["--calibration", "good/good_00.png"], "calibration good/good_00.png: cannot be read"),
    ):
        result = run_here(["anomalib-folder", "predict", "--model_path", str(checkpoint), "--folder_path", "line",
                           "--output_dir", "refused", *args], cwd=root)
        assert result.returncode == 2, result.stderr[-3000:]
        assert result.stderr.strip().count("\n") == 0 and words in result.stderr, result.stderr
        assert not (root / "refused").exists()


def test_a_changed_threshold_is_a_changed_setting_for_resume(calibrated, checkpoint):
    root, _ = calibrated
    base = ["anomalib-folder", "predict", "--model_path", str(checkpoint), "--folder_path", "line",
            "--output_dir", "flagged", "--threshold"]
    assert run_here([*base, "0.5"], cwd=root).returncode == 0
    again = run_here([*base, "0.5", "--resume", "True"], cwd=root)
    assert again.returncode == 0 and "6 from the earlier run" in again.stdout, again.stderr[-3000:]
    changed = run_here([*base, "0.25", "--resume", "True"], cwd=root)
    assert changed.returncode == 2 and "its earlier run used thresholds" in changed.stderr, changed.stderr
    for bad in ("nan", "inf"):
        refused = run_here([*base, bad], cwd=root)
        assert refused.returncode == 2 and "--threshold" in refused.stderr and refused.stderr.count("\n") == 1


def test_too_few_good_parts_are_refused_saying_how_many_it_takes(calibrated, checkpoint):
    root, _ = calibrated
    result = run_here(["anomalib-folder", "calibrate", "--model_path", str(checkpoint), "--good_folder", "line",
                       "--out", "few.json"], cwd=root)
    assert result.returncode == 2 and result.stderr.strip().count("\n") == 0, result.stderr
    assert "good_folder line: 6 good parts cannot show a false-positive rate of 0.01: it takes at least 99" in result.stderr
    assert not (root / "few.json").exists() and not (root / "few_runs").exists()


def test_calibrate_from_python_returns_the_calibration_and_raises_in_python_terms(calibrated, checkpoint):
    from anomalib_folder_ext import CalibrationError, calibrate

    root, _ = calibrated
    made = calibrate(checkpoint, root / "good", root / "again.json", work_dir=root / "calibration_runs",
                     target_fpr=0.05)  # the parts were predicted already: resumed, nothing predicted again
    written = json.loads((root / "calibration.json").read_text())
    assert made.image_threshold == written["image_threshold"] and made.path == str(root / "again.json")
    assert math.isclose(made.good["fpr_upper"], written["good"]["fpr_upper"])
    with pytest.raises(CalibrationError, match="it takes at least 99"):
        calibrate(checkpoint, root / "line", root / "few.json")
