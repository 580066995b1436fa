"""An offline demo: real texture photos, painted defects, and an EfficientAd trained by anomalib.

Nothing is downloaded. The material is a texture photograph that scikit-image ships inside its
package (``skimage.data.brick``); normal images are crops of it, anomalous ones get painted
scratches, blobs, cracks and stains with their masks saved. The model is trained with anomalib's
own ``Engine.fit`` — but with a **randomly initialised teacher** (saved where anomalib looks for
its pretrained weights, inside the demo's private cache) and penalty images from a local folder
instead of ImageNette. It exists to show the pipeline; real use loads your own checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from anomalib_folder_ext.console import quiet_training
from anomalib_folder_ext.outputs.summary import read_results

DEMO_VERSION = 3
SEED = 0
CROP = 256
# 20 steps: image / pixel AUROC 1.000 / 0.985 on the demo folder, against 1.000 / 0.993 after 40, in half
# the time (a training step of EfficientAd-S takes seconds on a CPU core)
TRAIN_IMAGES = 20
TRAIN_STEPS = TRAIN_IMAGES  # one epoch: validation (quantiles, thresholds) runs at its end
VAL_NORMAL, VAL_DEFECT = 10, 6
DEMO_NORMAL, DEMO_DEFECT = 10, 10
DEFECT_KINDS = ("scratch", "blob", "crack", "stain")
DEMO_FORMATS = (("png", "PNG", {}), ("bmp", "BMP", {}), ("jpg", "JPEG", {"quality": 95}), ("tiff", "TIFF", {}))


@dataclass(frozen=True)
class DemoAssets:
    """Where a built demo lives."""

    root: Path

    @property
    def checkpoint(self) -> Path:
        return self.root / "model.ckpt"

    @property
    def predict_folder(self) -> Path:
        return self.root / "data" / "demo"

    @property
    def mask_folder(self) -> Path:
        return self.root / "data" / "demo_masks"

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    def is_built(self) -> bool:
        if not (self.checkpoint.is_file() and self.manifest.is_file()):
            return False
        return json.loads(self.manifest.read_text()).get("version") == DEMO_VERSION


# -- images -------------------------------------------------------------------------------------
def texture() -> np.ndarray:
    """The demo material: scikit-image's brick-wall photograph (512x512), as RGB."""
    from skimage import data

    gray = data.brick()
    return np.repeat(gray[..., None], 3, axis=2)


def random_crop(material: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    top = rng.integers(0, material.shape[0] - CROP + 1)
    left = rng.integers(0, material.shape[1] - CROP + 1)
    crop = material[top : top + CROP, left : left + CROP]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return np.ascontiguousarray(crop)


def paint_defect(image: np.ndarray, kind: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Paint one defect of ``kind``; returns the new image and its boolean mask."""
    from PIL import Image, ImageDraw, ImageFilter

    canvas = Image.fromarray(image)
    mask = Image.new("L", canvas.size, 0)
    draw, mask_draw = ImageDraw.Draw(canvas), ImageDraw.Draw(mask)

    def point(margin: int = 30) -> tuple[int, int]:
        return tuple(int(v) for v in rng.integers(margin, CROP - margin, 2))

    if kind == "scratch":
        start, end = point(), point()
        while np.hypot(end[0] - start[0], end[1] - start[1]) < 80:  # long enough to be seen
            end = point()
        shade = tuple(int(v) for v in rng.integers(200, 256, 3))
        width = int(rng.integers(3, 6))
        draw.line([start, end], fill=shade, width=width)
        mask_draw.line([start, end], fill=255, width=width)
    elif kind == "blob":
        cx, cy = point(50)
        rx, ry = rng.integers(8, 22, 2)
        box = [cx - rx, cy - ry, cx + rx, cy + ry]
        shade = tuple(int(v) for v in rng.integers(0, 50, 3))
        draw.ellipse(box, fill=shade)
        mask_draw.ellipse(box, fill=255)
    elif kind == "crack":
        points = [point(60)]
        for _ in range(int(rng.integers(6, 12))):
            dx, dy = rng.integers(-18, 19, 2)
            x = int(np.clip(points[-1][0] + dx, 5, CROP - 5))
            y = int(np.clip(points[-1][1] + dy, 5, CROP - 5))
            points.append((x, y))
        draw.line(points, fill=(15, 10, 10), width=3, joint="curve")
        mask_draw.line(points, fill=255, width=3, joint="curve")
    elif kind == "stain":
        cx, cy = point(50)
        radius = int(rng.integers(14, 28))
        alpha = Image.new("L", canvas.size, 0)
        ImageDraw.Draw(alpha).ellipse([cx - radius, cy - radius, cx + radius, cy + radius], fill=200)
        alpha = alpha.filter(ImageFilter.GaussianBlur(radius / 3))
        colour = Image.new("RGB", canvas.size, tuple(int(v) for v in (rng.integers(120, 200), rng.integers(60, 110), 20)))
        canvas = Image.composite(colour, canvas, alpha)
        mask = alpha.point(lambda v: 255 if v > 60 else 0)
    else:
        msg = f"unknown defect kind {kind!r}"
        raise ValueError(msg)
    return np.asarray(canvas), np.asarray(mask) > 0


def write_dataset(data_dir: Path, seed: int = SEED) -> None:
    """train/ (normal), val_good/ + val_defect/ (+ val_mask/), demo/ (mixed, + demo_masks/)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    material = texture()

    def save(array: np.ndarray, path: Path, fmt: str = "PNG", **options) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(path, format=fmt, **options)

    for i in range(TRAIN_IMAGES):
        save(random_crop(material, rng), data_dir / "train" / f"train_{i:03d}.png")
    for i in range(VAL_NORMAL):
        save(random_crop(material, rng), data_dir / "val_good" / f"good_{i:03d}.png")
    for i in range(VAL_DEFECT):
        image, mask = paint_defect(random_crop(material, rng), DEFECT_KINDS[i % len(DEFECT_KINDS)], rng)
        save(image, data_dir / "val_defect" / f"defect_{i:03d}.png")
        save((mask * 255).astype(np.uint8), data_dir / "val_mask" / f"defect_{i:03d}.png")

    entries = [("good", None)] * DEMO_NORMAL + [(DEFECT_KINDS[i % len(DEFECT_KINDS)], i) for i in range(DEMO_DEFECT)]
    order = rng.permutation(len(entries))
    for number, index in enumerate(order, start=1):
        kind, _ = entries[index]
        image = random_crop(material, rng)
        mask = np.zeros(image.shape[:2], dtype=bool)
        if kind != "good":
            image, mask = paint_defect(image, kind, rng)
        extension, fmt, options = DEMO_FORMATS[number % len(DEMO_FORMATS)]
        stem = f"part_{number:02d}_{kind}"
        save(image, data_dir / "demo" / f"{stem}.{extension}", fmt, **options)
        save((mask * 255).astype(np.uint8), data_dir / "demo_masks" / f"{stem}.png")


def write_penalty_images(folder: Path) -> None:
    """Stand-in for ImageNette: a few of scikit-image's bundled photos, as an ImageFolder class."""
    from PIL import Image
    from skimage import data

    target = folder / "photos"
    target.mkdir(parents=True, exist_ok=True)
    for name in ("astronaut", "coffee", "chelsea", "rocket", "cat", "camera", "moon", "coins"):
        array = getattr(data, name)()
        Image.fromarray(array).convert("RGB").save(target / f"{name}.png")


def write_random_teacher(cache_home: Path, model_size: str = "small") -> Path:
    """A randomly initialised teacher where anomalib looks for the pretrained one (private cache)."""
    import torch
    from anomalib.models.image.efficient_ad.torch_model import (
        MediumPatchDescriptionNetwork,
        SmallPatchDescriptionNetwork,
    )

    path = cache_home / "anomalib" / "pre_trained" / "efficientad_pretrained_weights" / f"pretrained_teacher_{model_size}.pth"
    if path.exists():
        return path
    torch.manual_seed(SEED)
    network = SmallPatchDescriptionNetwork if model_size == "small" else MediumPatchDescriptionNetwork
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(network(out_channels=384).state_dict(), path)
    return path


# -- training -----------------------------------------------------------------------------------
def train(root: Path) -> Path:
    """Fit EfficientAd-S with anomalib's Engine on the demo data; returns the checkpoint path."""
    import torch
    from anomalib.data import Folder
    from anomalib.engine import Engine
    from anomalib.models import EfficientAd
    from lightning.pytorch import seed_everything

    cache_home = root / "cache"
    os.environ["XDG_CACHE_HOME"] = str(cache_home)  # anomalib resolves its cache at call time
    write_random_teacher(cache_home)
    write_penalty_images(root / "penalty")
    seed_everything(SEED, workers=True, verbose=False)
    if "OMP_NUM_THREADS" not in os.environ:  # torch takes that setting itself
        torch.set_num_threads(max(1, os.cpu_count() or 1))

    datamodule = Folder(
        name="demo",
        root=root / "data",
        normal_dir="train",
        abnormal_dir="val_defect",
        normal_test_dir="val_good",
        mask_dir="val_mask",
        train_batch_size=1,  # EfficientAd trains on single images
        eval_batch_size=8,
        num_workers=0,
        val_split_mode="same_as_test",
        seed=SEED,
    )
    model = EfficientAd(model_size="small", imagenet_dir=root / "penalty", visualizer=False)
    engine = Engine(
        max_steps=TRAIN_STEPS,
        accelerator="cpu",
        devices=1,
        default_root_dir=root / "train_run",
        logger=False,
        enable_progress_bar=True,
        enable_model_summary=False,
    )
    with quiet_training():
        engine.fit(model=model, datamodule=datamodule)
    checkpoint = root / "model.ckpt"
    engine.trainer.save_checkpoint(checkpoint)
    return checkpoint


def build(root: str | Path, force: bool = False) -> DemoAssets:
    """Build (or reuse) the demo assets under ``root``."""
    assets = DemoAssets(Path(root).resolve())
    if assets.is_built() and not force:
        print(f"demo assets: reusing {assets.root}")
        return assets
    if assets.root.exists():
        shutil.rmtree(assets.root)
    started = time.perf_counter()
    print(f"demo assets: building in {assets.root} (texture crops, painted defects, a few minutes of training on a CPU)")
    write_dataset(assets.root / "data")
    train(assets.root)
    shutil.rmtree(assets.root / "train_run", ignore_errors=True)
    assets.manifest.write_text(
        json.dumps({"version": DEMO_VERSION, "seed": SEED, "steps": TRAIN_STEPS, "texture": "skimage.data.brick"})
    )
    print(f"demo assets: built in {time.perf_counter() - started:.0f} s")
    return assets


def calibrated_checkpoint(path: str | Path, images: list[np.ndarray], model_size: str = "small") -> Path:
    """A real EfficientAd checkpoint in seconds, for tests and hardware checks (not for detection).

    No training and no download: random weights; the teacher statistics, map quantiles and the
    post-processor's threshold and min/max are computed from ``images`` (H x W x 3 uint8, 256 x 256)
    the way a fit's validation would, then the model is saved through a Lightning ``Trainer``.
    """
    import torch
    from anomalib.data import ImageBatch
    from anomalib.models import EfficientAd
    from lightning.pytorch import Trainer

    torch.manual_seed(SEED)
    batch = torch.stack([torch.from_numpy(image).permute(2, 0, 1).float() / 255 for image in images])
    model = EfficientAd(model_size=model_size).eval()
    halves = [batch[: len(batch) // 2], batch[len(batch) // 2 :]]
    batches = [ImageBatch(image=half, gt_label=torch.zeros(len(half), dtype=torch.bool)) for half in halves]
    with torch.no_grad():
        model.model.mean_std.update(model.teacher_channel_mean_std(batches))
        model.model.quantiles.update(model.map_norm_quantiles(batches))
        normal = model.model(batch)
    scores, maps = normal.pred_score.flatten(), normal.anomaly_map
    post = model.post_processor
    post.image_min.fill_(scores.min())
    post.image_max.fill_(scores.max() * 2)
    post._image_threshold.fill_(scores.max() * 1.2)  # noqa: SLF001 - what validation would set
    post.pixel_min.fill_(maps.min())
    post.pixel_max.fill_(maps.max() * 2)
    post._pixel_threshold.fill_(maps.max() * 1.2)  # noqa: SLF001

    path = Path(path)
    trainer = Trainer(logger=False, enable_checkpointing=False, accelerator="cpu", default_root_dir=path.parent)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(path)
    return path


# -- scoring ------------------------------------------------------------------------------------
def evaluate(output_dir: str | Path, mask_folder: str | Path) -> dict[str, float]:
    """Image and pixel AUROC of a finished run, from its files alone.

    The raw map is recovered exactly from what was written: ``raw = npy * (score - raw_min) + raw_min``
    (``score`` and ``raw_min`` from results.csv), so pixels compare across images as in anomalib's
    own pixel AUROC; the image score is ``score``.
    """
    from PIL import Image
    from sklearn.metrics import roc_auc_score

    output_dir, mask_folder = Path(output_dir), Path(mask_folder)
    rows = [row for row in read_results(output_dir) if row["status"] == "ok"]
    image_labels, image_scores, pixel_labels, pixel_scores = [], [], [], []
    for row in rows:
        normalized = np.load(output_dir / row["npy"])
        score, raw_min = float(row["score"]), float(row["raw_min"])
        raw = normalized * (score - raw_min) + raw_min
        mask_image = Image.open(mask_folder / f"{Path(row['image']).stem}.png")
        mask = np.asarray(mask_image.resize(raw.shape[::-1], Image.NEAREST)) > 127
        image_labels.append(bool(mask.any()))
        image_scores.append(score)
        pixel_labels.append(mask.ravel())
        pixel_scores.append(raw.ravel())
    return {
        "images": len(rows),
        "image_auroc": float(roc_auc_score(image_labels, image_scores)),
        "pixel_auroc": float(roc_auc_score(np.concatenate(pixel_labels), np.concatenate(pixel_scores))),
    }


def default_demo_dir() -> Path:
    """``$XDG_CACHE_HOME/anomalib-folder-ext/demo`` (``~/.cache/...`` when unset)."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "anomalib-folder-ext" / "demo"
