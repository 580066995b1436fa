"""The offline demo: reproducible data, and `make run`'s exact steps with the AUROC they print."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anomalib_folder_ext.tools import demo
from anomalib_folder_ext.outputs.summary import read_results
from conftest import REPO, run_cli, run_here


def digest(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_demo_data_is_reproducible_and_complete(tmp_path):
    demo.write_dataset(tmp_path / "one")
    demo.write_dataset(tmp_path / "two")
    assert digest(tmp_path / "one") == digest(tmp_path / "two")
    names = sorted(p.name for p in (tmp_path / "one" / "demo").iterdir())
    assert len(names) == demo.DEMO_NORMAL + demo.DEMO_DEFECT
    assert {Path(n).suffix for n in names} == {".png", ".bmp", ".jpg", ".tiff"}
    defective = 0
    for name in names:
        mask = np.asarray(Image.open(tmp_path / "one" / "demo_masks" / f"{Path(name).stem}.png"))
        assert mask.shape == (demo.CROP, demo.CROP)
        assert mask.any() == ("good" not in name)
        defective += mask.any()
    assert defective == demo.DEMO_DEFECT
    assert len(list((tmp_path / "one" / "train").iterdir())) == demo.TRAIN_IMAGES


@pytest.mark.parametrize("kind", demo.DEFECT_KINDS)
def test_each_defect_kind_changes_the_image_where_its_mask_is(kind):
    rng = np.random.default_rng(3)
    clean = demo.random_crop(demo.texture(), rng)
    painted, mask = demo.paint_defect(clean, kind, rng)
    assert mask.dtype == bool and 0 < mask.mean() < 0.2
    changed = np.abs(painted.astype(int) - clean.astype(int)).sum(axis=2) > 0
    assert changed[mask].mean() > 0.5  # the mask marks pixels that were really painted


def test_evaluate_recovers_raw_maps_from_npy_and_csv(tmp_path):
    """Pixels are compared on raw values rebuilt from the files, not on per-image 0-1 maps."""
    import torch

    from anomalib_folder_ext.outputs.maps import process_maps
    from anomalib_folder_ext.outputs.summary import ImageResult, csv_text

    masks, rows = tmp_path / "masks", []
    masks.mkdir()
    rng = np.random.default_rng(0)
    for i, defect in enumerate([False, False, True, True]):
        raw = rng.random((8, 8)).astype(np.float32) * 0.1  # low background everywhere
        mask = np.zeros((8, 8), dtype=np.uint8)
        if defect:
            raw[2:4, 2:4] += 5.0
            mask[2:4, 2:4] = 255
        computed = process_maps(torch.from_numpy(raw))
        np.save(tmp_path / f"m{i}_anomaly.npy", computed.normalized[0].numpy())
        Image.fromarray(mask).save(masks / f"m{i}.png")
        score, raw_min = computed.stats[0, :2].tolist()
        rows.append(ImageResult(f"m{i}.png", npy=f"m{i}_anomaly.npy", score=score, raw_min=raw_min))
    (tmp_path / "results.csv").write_text(csv_text(rows))
    scores = demo.evaluate(tmp_path, masks)
    assert scores["images"] == 4 and scores["image_auroc"] == 1.0 and scores["pixel_auroc"] == 1.0


@pytest.mark.slow
def test_make_run_steps_build_predict_and_score(tmp_path):
    """`make run` step by step, in a scratch working dir with its own .demo/, as in a fresh clone."""
    private_home = tmp_path / "home_cache"
    private_home.mkdir()
    env = {"XDG_CACHE_HOME": str(private_home)}

    build = run_cli(["anomalib-folder", "demo", "build", "--dir", ".demo"], cwd=tmp_path, timeout=600, env=env)
    assert build.returncode == 0, build.stderr[-3000:]
    assert (tmp_path / ".demo" / "model.ckpt").is_file()
    teacher = tmp_path / ".demo/cache/anomalib/pre_trained/efficientad_pretrained_weights/pretrained_teacher_small.pth"
    assert teacher.is_file(), "the random teacher lives in the demo's private cache"
    assert not any(private_home.iterdir()), "the user's cache must stay untouched"

    # as the Makefile runs it: caches inside .demo/
    predict_env = {"XDG_CACHE_HOME": str(tmp_path / ".demo" / "cache")}
    predict = run_cli(["anomalib", "predict", "--config", str(REPO / "configs/folder.yaml")], cwd=tmp_path,
                      env=predict_env)
    assert predict.returncode == 0, predict.stderr[-3000:]
    output = tmp_path / "inference_results_demo"
    count = demo.DEMO_NORMAL + demo.DEMO_DEFECT
    assert len(list(output.glob("*_anomaly.npy"))) == count and len(list(output.glob("*_anomaly.png"))) == count

    score = run_cli(["anomalib-folder", "demo", "score", "--dir", ".demo", "--output_dir", "inference_results_demo"],
                    cwd=tmp_path, env=env)
    assert score.returncode == 0, score.stderr[-3000:]
    image_auroc = float(re.search(r"image AUROC: ([0-9.]+)", score.stdout).group(1))
    pixel_auroc = float(re.search(r"pixel AUROC: ([0-9.]+)", score.stdout).group(1))
    assert image_auroc >= 0.90 and pixel_auroc >= 0.95, score.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == [".demo", "home_cache", "inference_results_demo"]
    assert not any(private_home.iterdir()), "nothing outside the working dir and the demo dir"

    again = run_cli(["anomalib-folder", "demo", "build", "--dir", ".demo"], cwd=tmp_path, env=env)
    assert again.returncode == 0 and "reusing" in again.stdout

    # Comparable maps: per_image stretches every map to a max of 1; model mode (anomalib's pixel
    # normalisation from the checkpoint) keeps every clean image's map below every defective one's.
    model_mode = run_here(["anomalib", "predict", "--config", str(REPO / "configs/folder.yaml"),
                           "--trainer.callbacks.init_args.normalization", "model",
                           "--data.init_args.output_dir", "model_mode"], cwd=tmp_path, env=predict_env)
    assert model_mode.returncode == 0, model_mode.stderr[-3000:]
    maxima: dict[str, dict[bool, list[float]]] = {"inference_results_demo": {}, "model_mode": {}}
    for output_name, by_defect in maxima.items():
        for row in read_results(tmp_path / output_name):
            mask = np.asarray(Image.open(tmp_path / ".demo/data/demo_masks" / f"{Path(row['image']).stem}.png"))
            by_defect.setdefault(bool(mask.any()), []).append(float(np.load(tmp_path / output_name / row["npy"]).max()))
    assert set(maxima["inference_results_demo"][False] + maxima["inference_results_demo"][True]) == {1.0}
    clean, defective = maxima["model_mode"][False], maxima["model_mode"][True]
    ordered = np.mean([c < d for c in clean for d in defective])  # 1.0 on this project's CPUs
    assert ordered >= 0.90 and np.median(clean) < np.median(defective), maxima["model_mode"]
    assert max(clean) < 0.5 < max(defective)  # 0.5 is the model's pixel threshold
