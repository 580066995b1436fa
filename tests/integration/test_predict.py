"""End to end: the real `anomalib predict` CLI and `anomalib-folder` on a real checkpoint and real files."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import MIXED_IMAGES, REPO, run_cli, run_here, write_images

pytestmark = pytest.mark.slow

TOP_LEVEL = [name for name in MIXED_IMAGES if "/" not in name]
# natural order, case-insensitive: a.jpg, a.png, img2.JPG, img10.png, scan.bmp, wafer.tiff
EXPECTED_ORDER = ["a.jpg", "a.png", "img2.JPG", "img10.png", "scan.bmp", "wafer.tiff"]


def read_rows(output_dir: Path) -> list[dict[str, str]]:
    from anomalib_folder_ext.outputs.summary import read_results

    return read_results(output_dir)


@pytest.fixture(scope="module")
def yaml_run(checkpoint, tmp_path_factory):
    """`anomalib predict --config configs/folder.yaml` exactly as the README shows it."""
    root = tmp_path_factory.mktemp("yaml_run")
    folder = root / "data" / "batch_01"
    write_images(folder, MIXED_IMAGES)
    (folder / "notes.txt").write_text("not an image")
    workdir = root / "work"
    workdir.mkdir()
    result = run_cli(
        ["anomalib", "predict", "--config", str(REPO / "configs/folder.yaml"), "--ckpt_path", str(checkpoint),
         "--data.init_args.folder_path", str(folder)],
        cwd=workdir,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir, folder, workdir / "inference_results_batch_01", result


def anomalib_reference(checkpoint: Path, folder: Path, names) -> tuple[dict, dict]:
    """anomalib's own maps: image -> the model's pre-processor -> forward, one image at a time."""
    from anomalib.data import InferenceBatch
    from anomalib.data.utils import read_image
    from anomalib.models import EfficientAd

    model = EfficientAd.load_from_checkpoint(checkpoint, map_location="cpu").eval()
    maps, post = {}, {}
    with torch.no_grad():
        for name in names:
            image = read_image(folder / name, as_tensor=True).unsqueeze(0)
            output = model.model(model.pre_processor.transform(image))
            maps[name] = output.anomaly_map[0, 0].numpy()
            processed = model.post_processor(InferenceBatch(pred_score=output.pred_score.flatten()))
            post[name] = (float(processed.pred_score[0]), bool(processed.pred_label[0]))
    return maps, post


@pytest.fixture(scope="module")
def reference_maps(checkpoint, yaml_run):
    _, folder, _, _ = yaml_run
    return anomalib_reference(checkpoint, folder, MIXED_IMAGES)


def assert_maps_equal_reference(output_dir: Path, maps: dict, post: dict) -> None:
    rows = {row["image"]: row for row in read_rows(output_dir)}
    for name, raw in maps.items():
        saved = np.load(output_dir / rows[name]["npy"])
        assert saved.dtype == np.float32 and saved.shape == (256, 256)
        assert saved.min() == 0.0 and saved.max() == 1.0
        expected = (raw - raw.min()) / (raw.max() - raw.min())
        assert np.abs(saved - expected).max() <= 1e-5, name
        assert float(rows[name]["score"]) == pytest.approx(float(raw.max()), rel=1e-5, abs=1e-6)
        assert float(rows[name]["raw_min"]) == pytest.approx(float(raw.min()), rel=1e-5, abs=1e-6)
        assert float(rows[name]["norm_mean"]) == pytest.approx(float(expected.mean()), abs=1e-5)
        pred_score, pred_label = post[name]
        assert float(rows[name]["pred_score"]) == pytest.approx(pred_score, abs=1e-5)
        assert rows[name]["pred_label"] == str(pred_label).lower()


def test_yaml_run_writes_exactly_the_requested_files(yaml_run):
    workdir, _, output_dir, _ = yaml_run
    assert sorted(p.name for p in workdir.iterdir()) == ["inference_results_batch_01"], "stray files in the cwd"
    expected = {"results.csv", "defective.csv", "results_summary.txt", "config.yaml", ".journal/owner.json", ".journal/rank0.jsonl",
                ".journal/finished.json"}
    for stem in ["a_jpg", "a_png", "img2", "img10", "scan", "wafer"]:
        expected |= {f"{stem}_anomaly.npy", f"{stem}_anomaly.png"}
    written = {p.relative_to(output_dir).as_posix() for p in output_dir.rglob("*") if p.is_file()}
    assert written == expected  # no anomalib composites, no sub-folder (not recursive), no temp files


def test_npy_equals_anomalib_own_map_minmax_normalised(yaml_run, reference_maps):
    """A folder of mixed sizes: its batches take the float path (resized in the workers)."""
    _, _, output_dir, _ = yaml_run
    maps, post = reference_maps
    assert_maps_equal_reference(output_dir, {name: maps[name] for name in TOP_LEVEL}, post)


def test_batches_of_one_size_go_to_the_device_as_uint8_and_still_equal_anomalib(checkpoint, tmp_path):
    """Batch size 2 over [256x256, 256x256], [240x320, 240x320], [300x200]: every batch is of one size,
    so it is decoded to uint8, converted on the device and resized there by the model's pre-processor."""
    folder = tmp_path / "uniform"
    spec = {"p1.png": ((256, 256), "PNG"), "p2.png": ((256, 256), "PNG"), "p3.jpg": ((320, 240), "JPEG"),
            "p4.jpg": ((320, 240), "JPEG"), "p5.png": ((200, 300), "PNG")}
    write_images(folder, spec, seed=5)
    result = run_here(
        ["anomalib", "predict", "--config", str(REPO / "configs/folder.yaml"), "--ckpt_path", str(checkpoint),
         "--data.init_args.folder_path", str(folder), "--data.init_args.batch_size", "2",
         "--data.init_args.output_dir", str(tmp_path / "out")],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert_maps_equal_reference(tmp_path / "out", *anomalib_reference(checkpoint, folder, spec))


def test_csv_rows_follow_the_folder_in_natural_order(yaml_run, reference_maps):
    _, folder, output_dir, _ = yaml_run
    _, post = reference_maps
    rows = read_rows(output_dir)
    assert [row["image"] for row in rows] == EXPECTED_ORDER
    for row in rows:
        assert row["status"] == "ok" and row["error"] == ""
        width, height = Image.open(folder / row["image"]).size
        assert (int(row["width"]), int(row["height"])) == (width, height)
        assert (output_dir / row["png"]).is_file()
        pred_score, pred_label = post[row["image"]]
        assert float(row["pred_score"]) == pytest.approx(pred_score, abs=1e-5)
        assert row["pred_label"] == str(pred_label).lower()


def test_png_is_the_colormapped_npy(yaml_run):
    from anomalib_folder_ext.outputs.artifacts import colormap_lut, colorize
    from anomalib_folder_ext.outputs.maps import quantize

    _, _, output_dir, _ = yaml_run
    for row in read_rows(output_dir):
        png = np.asarray(Image.open(output_dir / row["png"]).convert("RGB"))  # a palette PNG
        assert png.shape == (256, 256, 3)
        levels = quantize(torch.from_numpy(np.load(output_dir / row["npy"]))).numpy()
        np.testing.assert_array_equal(png, colorize(levels, colormap_lut("jet")))


def test_summary_reports_parameters_statistics_and_top_list(yaml_run, checkpoint):
    _, folder, output_dir, _ = yaml_run
    text = (output_dir / "results_summary.txt").read_text()
    rows = read_rows(output_dir)
    scores = np.array([float(r["score"]) for r in rows])
    assert f"checkpoint        : {checkpoint}" in text
    assert f"folder            : {folder}" in text
    assert "image size (H, W) : (256, 256)" in text and "batch size        : 8" in text
    assert "precision         : 32-true" in text and "images            : 6 (6 ok, 0 failed)" in text
    timing = dict(line.split(" : ", 1) for line in text.splitlines() if " : " in line and line.startswith("  "))
    startup = float(timing["  start-up         "].split(" s ")[0])
    loop = float(timing["  predict loop     "].split(" s ")[0])
    assert 1 < startup < 300 and 0 < loop < startup  # imports and checkpoint take longer than 6 images here
    assert float(timing["  throughput       "].split()[0]) == pytest.approx(6 / loop, rel=0.01)
    assert re.fullmatch(r"host \d+ MiB", timing["  peak memory      "])  # on a GPU: ", GPU <n> MiB"
    assert f"score max        : {scores.max():.6g}" in text
    assert f"score median     : {np.median(scores):.6g}" in text
    top = text.split("Most anomalous images")[1].split("\n\n")[0] + "\n"
    ranked = [r["image"] for r in sorted(rows, key=lambda r: -float(r["score"]))]
    positions = [top.index(f" {name}\n") for name in ranked]
    assert positions == sorted(positions)


def test_cli_with_old_flags_writes_npy_only_and_mirrors_subfolders(checkpoint, yaml_run, tmp_path):
    _, folder, yaml_output, _ = yaml_run
    result = run_here(
        ["anomalib-folder", "predict", "--model_path", str(checkpoint), "--batch_folder", "batch_01",
         "--data_root", str(folder.parent), "--save_as_image", "False", "--batch_size", "3", "--recursive", "True",
         "--output_dir", "out"],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    output_dir = tmp_path / "out"
    assert not list(output_dir.rglob("*.png"))
    rows = read_rows(output_dir)
    assert [r["image"] for r in rows] == ["a.jpg", "a.png", "img2.JPG", "img10.png", "scan.bmp", "sub/deep.jpeg",
                                          "wafer.tiff"]
    assert (output_dir / "sub" / "deep_anomaly.npy").is_file()
    assert all(r["png"] == "" for r in rows)
    for row in read_rows(yaml_output):  # batch size 3 vs 8, other command: same maps
        np.testing.assert_allclose(np.load(output_dir / row["npy"]), np.load(yaml_output / row["npy"]), atol=1e-5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_unreadable_image_is_listed_as_failed_and_the_rest_complete(checkpoint, tmp_path):
    folder = tmp_path / "in"
    write_images(folder, {"good1.png": ((64, 64), "PNG"), "good2.jpg": ((64, 48), "JPEG")})
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    result = run_here(
        ["anomalib-folder", "predict", "--model_path", str(checkpoint), "--folder_path", str(folder),
         "--save_as_image", "False"],
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {r["image"]: r for r in read_rows(tmp_path / "inference_results_in")}
    assert rows["broken.png"]["status"] == "failed" and "UnidentifiedImageError" in rows["broken.png"]["error"]
    assert rows["broken.png"]["npy"] == "" and not (tmp_path / "inference_results_in" / "broken_anomaly.npy").exists()
    assert rows["good1.png"]["status"] == rows["good2.jpg"]["status"] == "ok"
    summary = (tmp_path / "inference_results_in" / "results_summary.txt").read_text()
    assert "2 ok, 1 failed, 3 total" in summary


@pytest.fixture(scope="module")
def model_original_run(checkpoint, yaml_run):
    """The old flags with every look-at-it option on: model normalisation, original size, overlays, report."""
    workdir, folder, _, _ = yaml_run
    result = run_here(["anomalib-folder", "predict", "--model_path", str(checkpoint), "--folder_path", str(folder),
                       "--output_dir", "model_original", "--normalization", "model", "--map_size", "original",
                       "--save_overlay", "True", "--report", "True"], cwd=workdir.parent)
    assert result.returncode == 0, result.stderr[-3000:]
    last = result.stdout.strip().splitlines()[-1]  # the last line names every kind of file the run wrote
    assert last.endswith("results.csv, defective.csv, results_summary.txt, report.html, report.png, *_overlay.jpg"), last
    return workdir.parent / "model_original"


def test_model_normalization_at_original_size_with_overlays(checkpoint, yaml_run, reference_maps, model_original_run):
    """`--normalization model --map_size original --save_overlay True`: anomalib's own pixel normalisation
    of the raw map, resized bilinearly to the image's (H, W); the PNG and the overlay (the map's colours
    blended half and half over the image) have that size too; the raw numbers are unchanged."""
    import torch.nn.functional as F  # noqa: N812
    from anomalib.post_processing import PostProcessor
    from PIL import Image

    from anomalib_folder_ext.outputs.artifacts import colormap_lut

    _, folder, default_dir, _ = yaml_run
    output_dir = model_original_run
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["state_dict"]
    pixel = [state[f"post_processor.{key}"] for key in ("pixel_min", "pixel_max", "_pixel_threshold")]
    maps, _ = reference_maps
    rows = {row["image"]: row for row in read_rows(output_dir)}
    default_rows = {row["image"]: row for row in read_rows(default_dir)}
    for name in TOP_LEVEL:
        (width, height), _ = MIXED_IMAGES[name]
        saved = np.load(output_dir / rows[name]["npy"])
        assert saved.shape == (height, width), name
        assert Image.open(output_dir / rows[name]["png"]).size == (width, height)
        normalized = PostProcessor._normalize(torch.from_numpy(maps[name]), *pixel)  # noqa: SLF001
        expected = F.interpolate(normalized[None, None], size=(height, width), mode="bilinear", align_corners=False)[0, 0]
        assert np.abs(saved - expected.numpy()).max() <= 1e-5, name
        for column in ("score", "raw_min", "raw_mean", "pred_score", "pred_label"):
            assert rows[name][column] == default_rows[name][column], (name, column)
        overlay = np.asarray(Image.open(output_dir / rows[name]["overlay"]).convert("RGB"), dtype=np.float32)
        levels = np.asarray(Image.open(output_dir / rows[name]["png"]))  # palette indices: the map's levels
        original = np.asarray(Image.open(folder / name).convert("RGB"), dtype=np.float32)
        expected_overlay = 0.5 * original + 0.5 * colormap_lut("jet")[levels]
        assert overlay.shape == (height, width, 3) and np.abs(overlay - expected_overlay).mean() < 4, name  # JPEG
    summary = (output_dir / "results_summary.txt").read_text()
    assert "normalization     : model (anomalib's pixel normalisation" in summary
    assert "map size          : each image's own size" in summary


def test_the_report_renders_offline_in_headless_chromium(model_original_run, tmp_path):
    """report.html from file:// in a real browser: every image loads (no network); report.png is a picture."""
    import shutil
    import subprocess

    from PIL import Image

    assert (model_original_run / "report.png").is_file() and (model_original_run / "report.html").is_file()
    sheet = Image.open(model_original_run / "report.png")
    assert sheet.width > 600 and len(set(sheet.convert("L").getdata())) > 50  # thumbnails, not a blank page
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (Debian package chromium; .ci/run installs it)")
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000"]
    url = (model_original_run / "report.html").as_uri()
    dom = subprocess.run([*flags, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=False).stdout
    loaded = re.search(r'data-images-loaded="(\d+)" data-images="(\d+)"', dom)
    assert loaded, dom[-2000:]
    rows = read_rows(model_original_run)
    assert int(loaded.group(1)) == int(loaded.group(2)) == 2 * min(12, len(rows)) + 1  # input + overlay, the legend
    shot = tmp_path / "report_screenshot.png"
    subprocess.run([*flags, "--window-size=1100,1300", f"--screenshot={shot}", url], capture_output=True, timeout=120,
                   check=False)
    assert shot.is_file() and len(set(Image.open(shot).convert("L").getdata())) > 50


def test_a_console_that_is_no_terminal_gets_progress_lines_with_rate_and_time_left(checkpoint, tmp_path):
    """A log file (here: a pipe) sees no progress bar; it gets a line now and then, the last line last."""
    folder = tmp_path / "in"
    write_images(folder, {f"part_{index}.png": ((64, 64), "PNG") for index in range(5)})
    result = run_cli(["anomalib-folder", "predict", "--model_path", str(checkpoint), "--folder_path", str(folder),
                      "--batch_size", "1", "--save_as_image", "False", "--output_dir", "out"],
                     cwd=tmp_path, env={"ANOMALIB_FOLDER_PROGRESS_S": "0.000001"})
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()
    progress = [line for line in lines if line.startswith("predicting ")]
    # one line after every batch but the first (the clock starts there) and the last (the last line follows)
    assert [re.sub(r", [\d.]+ images/s, ETA \d:\d\d:\d\d$", "", line) for line in progress] == [
        f"predicting out/: {done} of 5 images ({done * 20}%)" for done in (2, 3, 4)], lines
    assert lines[-1].startswith("out/: 5 images"), lines
    assert sum("━" in line for line in lines) <= 1  # rich's bar, which cannot redraw in a file, shows only its end
