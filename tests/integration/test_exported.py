"""Exported models (OpenVINO IR, ONNX) through the same pipeline as the checkpoint: export, parity, bad input."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from anomalib_folder_ext.outputs.summary import read_results
from conftest import REPO, run_cli, run_here, write_images

# Several sizes: one folder is predicted as mixed-size batches (resized on the host), another as
# one-size batches (resized by the model's pre-processor).
MIXED = {"a.png": ((300, 200), "PNG"), "b.jpg": ((256, 256), "JPEG"), "c.png": ((64, 96), "PNG"), "d.bmp": ((513, 257), "BMP")}
SAME = {f"s{index}.png": ((320, 240), "PNG") for index in range(4)}
PARITY = 1e-4


def npys(output_dir: Path) -> dict[str, np.ndarray]:
    return {path.name: np.load(path) for path in sorted(output_dir.glob("*.npy"))}


def assert_same_results(mine: Path, reference: Path, tolerance: float = PARITY) -> None:
    expected, got = npys(reference), npys(mine)
    assert sorted(got) == sorted(expected) and expected
    for name, values in expected.items():
        assert got[name].shape == values.shape
        assert np.abs(got[name] - values).max() <= tolerance, name
    rows, reference_rows = read_results(mine), read_results(reference)
    assert [row["image"] for row in rows] == [row["image"] for row in reference_rows]
    for row, ref in zip(rows, reference_rows, strict=True):
        assert row["status"] == ref["status"] == "ok" and row["pred_label"] == ref["pred_label"]
        for column in ("score", "pred_score", "raw_min", "raw_mean", "norm_mean"):
            assert abs(float(row[column]) - float(ref[column])) <= tolerance, (row, ref)


@pytest.fixture(scope="module")
def work(checkpoint, tmp_path_factory):
    """Folders, the checkpoint's own results (per_image and model normalisation), and an OpenVINO export."""
    root = tmp_path_factory.mktemp("exported")
    write_images(root / "mixed", MIXED, seed=7)
    write_images(root / "same", SAME, seed=8)
    for folder in ("mixed", "same"):
        for mode in ("per_image", "model"):
            result = run_here(["anomalib-folder", "predict", "--model_path", str(checkpoint), "--folder_path", folder,
                               "--output_dir", f"torch_{folder}_{mode}", "--normalization", mode], cwd=root)
            assert result.returncode == 0, result.stderr[-3000:]
    exported = run_cli(["anomalib-folder", "export", "--model_path", str(checkpoint), "--out", "export_ov",
                        "--calibration_folder", "same"], cwd=root)
    assert exported.returncode == 0, exported.stderr[-3000:]
    return root, exported


@pytest.mark.slow
def test_export_checks_itself_and_says_where_the_model_is(work, checkpoint):
    root, exported = work
    lines = exported.stdout.strip().splitlines()
    assert exported.stderr.strip() == "", exported.stderr[-2000:]  # no dependency noise
    difference = re.search(r"vs the checkpoint on 4 images: largest map difference (\S+) \(", lines[-2])
    assert difference and float(difference.group(1)) <= PARITY, lines
    assert lines[-1].startswith("export_ov/: OpenVINO IR (fp32) of efficient_ad.ckpt — export.json, model.bin, model.xml")
    metadata = json.loads((root / "export_ov" / "export.json").read_text())
    from anomalib_folder_ext.models.checkpoint import content_digest

    assert metadata["checkpoint"]["sha256"] == content_digest(checkpoint) and metadata["input_size"] == [256, 256]
    assert metadata["parity"]["map_difference"] <= PARITY and metadata["versions"]["openvino"]


@pytest.mark.slow
@pytest.mark.parametrize("folder", ["mixed", "same"])
@pytest.mark.parametrize("mode", ["per_image", "model"])
def test_openvino_fp32_gives_the_checkpoints_maps_scores_and_labels(work, folder, mode):
    root, _ = work
    result = run_here(["anomalib-folder", "predict", "--model_path", "export_ov", "--folder_path", folder, "--output_dir", f"ov_{folder}_{mode}",
                       "--normalization", mode], cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same_results(root / f"ov_{folder}_{mode}", root / f"torch_{folder}_{mode}")
    summary = (root / f"ov_{folder}_{mode}" / "results_summary.txt").read_text()
    assert re.search(r"precision\s+: 32-true: OpenVINO \S+ \(f32\), model.xml \(fp32 export\)", summary), summary
    assert f"checkpoint        : {(root / 'export_ov' / 'model.xml').resolve()}" in summary


@pytest.mark.slow
def test_onnx_runs_from_anomalibs_own_predict_with_the_shipped_config(work, checkpoint):
    root, _ = work
    from anomalib_folder_ext.run.export import export_checkpoint

    graph, parity = export_checkpoint(checkpoint, "onnx", root / "export_onnx")
    assert graph.name == "model.onnx" and parity.map_difference <= PARITY
    result = run_here(["anomalib", "predict", "--config", str(REPO / "configs/folder.yaml"), "--config", str(REPO / "configs/exported.yaml"),
                       "--model.init_args.model_path", str(graph), "--data.init_args.folder_path", "mixed",
                       "--data.init_args.output_dir", "onnx_mixed"], cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "ckpt_path is not provided" not in result.stdout + result.stderr
    assert_same_results(root / "onnx_mixed", root / "torch_mixed_per_image")
    assert "ONNX Runtime" in (root / "onnx_mixed" / "results_summary.txt").read_text()


@pytest.mark.slow
def test_resume_does_not_mix_the_checkpoints_maps_with_an_exported_models(work, checkpoint):
    root, _ = work
    out = root / "torch_same_per_image"
    before = (out / "results.csv").read_bytes()
    result = run_here(["anomalib-folder", "predict", "--model_path", "export_ov", "--folder_path", "same", "--output_dir", str(out),
                       "--resume", "True"], cwd=root)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "resume only continues a run with the same settings" in result.stderr
    assert (out / "results.csv").read_bytes() == before


@pytest.mark.slow
def test_int8_and_fp16_exports_print_their_error_against_the_checkpoint(work, checkpoint):
    root, _ = work
    for precision in ("fp16", "int8"):
        result = run_here(["anomalib-folder", "export", "--model_path", str(checkpoint), "--out", f"export_{precision}", "--precision",
                           precision, "--calibration_folder", "same"], cwd=root)
        assert result.returncode == 0, result.stderr[-3000:]
        assert re.search(r"largest map difference \S+ \(\S+% of the map range\)", result.stdout), result.stdout
        metadata = json.loads((root / f"export_{precision}" / "export.json").read_text())
        assert metadata["precision"] == precision and metadata["parity"]["map_difference"] < 1.0
        # a synthetic defect's score: fp16 keeps the scale; int8 is warned about exactly when it does not
        parity = metadata["parity"]
        scale = parity["defect_score_exported"] / parity["defect_score"]
        assert parity["defect_score"] > max(0.0, parity["score_difference"])
        kept = 1 / 1.25 <= scale <= 1.25
        assert ("changes the scale of scores" in result.stderr) == (not kept), (scale, result.stderr)
        assert kept or precision == "int8", scale
    predicted = run_here(["anomalib-folder", "predict", "--model_path", "export_int8", "--folder_path", "same", "--output_dir", "int8_same"],
                         cwd=root)
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    assert len(read_results(root / "int8_same")) == len(SAME)
    assert "(int8 export)" in (root / "int8_same" / "results_summary.txt").read_text()


@pytest.mark.slow
def test_an_image_size_other_than_the_exports_is_refused_before_anything_is_written(work):
    root, _ = work
    result = run_here(["anomalib-folder", "predict", "--model_path", "export_ov", "--folder_path", "same", "--output_dir",
                       "wrong_size", "--image_size", "128", "128"], cwd=root)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "differs from the exported model's input size 256 256" in result.stderr
    assert not (root / "wrong_size").exists()


@pytest.mark.slow
def test_batches_run_an_export_and_a_second_run_finds_them_done(work):
    root, _ = work
    for index in (1, 2):
        write_images(root / "lot" / f"batch_0{index}", {f"p{index}{n}.png": ((128, 128), "PNG") for n in range(2)}, seed=index)
    args = ["anomalib-folder", "batches", "lot", "--model_path", "export_ov", "--output_root", "lot_out"]
    first = run_here(args, cwd=root)
    assert first.returncode == 0, first.stderr[-3000:]
    assert len(read_results(root / "lot_out" / "inference_results_batch_02")) == 2
    record = json.loads((root / "lot_out" / "inference_results_batch_01" / ".journal" / "finished.json").read_text())
    assert record["settings"]["precision"] == "32-true on openvino"
    again = run_here(args, cwd=root)
    assert again.returncode == 0 and again.stdout.count("done earlier") == 2, again.stdout[-2000:]


@pytest.mark.slow
def test_a_model_from_anomalibs_own_export_runs_and_what_it_cannot_honour_is_refused(work, checkpoint):
    """Its graph normalises with the checkpoint's statistics: normalization model passes its maps through."""
    root, _ = work
    from anomalib.models import EfficientAd

    model = EfficientAd.load_from_checkpoint(checkpoint, map_location="cpu", weights_only=False)
    xml = model.to_openvino(root / "anomalib_export", input_size=(256, 256))
    result = run_here(["anomalib-folder", "predict", "--model_path", str(xml), "--folder_path", "same",
                       "--output_dir", "anomalib_same_model", "--normalization", "model"], cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    mine, reference = root / "anomalib_same_model", root / "torch_same_model"
    for name, values in npys(reference).items():
        assert np.abs(np.load(mine / name) - values).max() <= PARITY, name
    for row, ref in zip(read_results(mine), read_results(reference), strict=True):
        assert row["pred_label"] == ref["pred_label"] and abs(float(row["pred_score"]) - float(ref["pred_score"])) <= PARITY
    assert "(anomalib export, normalised in the graph)" in (mine / "results_summary.txt").read_text()
    fixed = run_here(["anomalib-folder", "predict", "--model_path", str(xml), "--folder_path", "same", "--output_dir",
                      "anomalib_fixed", "--normalization", "fixed", "--vmin", "0", "--vmax", "2"], cwd=root)
    assert fixed.returncode == 2 and fixed.stderr.count("\n") == 1 and "an anomalib export" in fixed.stderr, fixed.stderr
    assert not list((root / "anomalib_fixed").glob("*.npy")) and not (root / "anomalib_fixed" / "results.csv").exists()


@pytest.mark.slow
def test_new_thresholds_beside_the_same_graph_are_another_model_for_resume(work, checkpoint):
    """A re-export with other statistics has the same network: resume refuses to mix the two in one
    results.csv; a re-export into its own folder replaces the earlier format's graph."""
    from anomalib_folder_ext.run.export import export_checkpoint

    root, _ = work
    export_checkpoint(checkpoint, "onnx", root / "reexport")
    first = run_here(["anomalib-folder", "predict", "--model_path", "reexport", "--folder_path", "same", "--output_dir",
                      "reexport_same"], cwd=root)
    assert first.returncode == 0, first.stderr[-3000:]
    record = json.loads((root / "reexport" / "export.json").read_text())
    record["post_processor"]["state"]["_pixel_threshold"] *= 0.5  # as calibrated on other good parts
    (root / "reexport" / "export.json").write_text(json.dumps(record))
    before = (root / "reexport_same" / "results.csv").read_bytes()
    resumed = run_here(["anomalib-folder", "predict", "--model_path", "reexport", "--folder_path", "same", "--output_dir",
                        "reexport_same", "--resume", "True"], cwd=root)
    assert resumed.returncode == 2 and "resume only continues a run with the same settings" in resumed.stderr, resumed.stderr
    assert (root / "reexport_same" / "results.csv").read_bytes() == before

    export_checkpoint(checkpoint, "openvino", root / "reexport")
    assert sorted(path.name for path in (root / "reexport").iterdir()) == ["export.json", "model.bin", "model.xml"]


@pytest.mark.slow
def test_a_graph_is_used_only_with_the_export_json_that_describes_it(work):
    import shutil

    root, _ = work
    for name in ("changed", "interrupted", "stale"):
        shutil.copytree(root / "export_ov", root / name)
    with (root / "changed" / "model.xml").open("a") as graph:
        graph.write("<!-- edited -->\n")
    record = json.loads((root / "interrupted" / "export.json").read_text())
    (root / "interrupted" / "export.json").write_text(json.dumps({"tool": record["tool"], "complete": False}))
    (root / "stale" / "model.onnx").write_bytes(b"a graph left from an earlier ONNX export")
    for model, needle in [("changed", "not the graph"), ("interrupted", "the export was interrupted before it finished"),
                          ("stale/model.onnx", "describes model.xml, not this file")]:
        refused(["anomalib-folder", "predict", "--model_path", model, "--folder_path", "same", "--output_dir",
                 f"out_{Path(model).parts[0]}"], root, needle)
        assert not (root / f"out_{Path(model).parts[0]}").exists()


# -- bad input: one line, before the first image, nothing written -------------------------------------
def refused(args: list[str], cwd: Path, needle: str) -> str:
    result = run_here(args, cwd=cwd)
    assert result.returncode == 2, (result.stdout[-2000:], result.stderr[-2000:])
    assert result.stderr.count("\n") == 1 and needle in result.stderr, result.stderr
    return result.stderr


@pytest.fixture
def folder(tmp_path):
    write_images(tmp_path / "in", {"a.png": ((64, 64), "PNG")})
    return tmp_path


def predict_args(model: Path) -> list[str]:
    return ["anomalib-folder", "predict", "--model_path", str(model), "--folder_path", "in", "--output_dir", "out"]


def test_an_ir_without_its_weights_is_refused(folder):
    (folder / "m").mkdir()
    (folder / "m" / "model.xml").write_text("<net/>")
    refused(predict_args(folder / "m" / "model.xml"), folder, "its weights model.bin are missing")
    assert not (folder / "out").exists()


def test_a_truncated_onnx_is_refused(folder):
    (folder / "model.onnx").write_bytes(b"\x08\x07\x12\x04trunc")
    refused(predict_args(folder / "model.onnx"), folder, "ONNX Runtime cannot load it")
    assert not (folder / "out").exists()


def test_an_onnx_of_another_model_is_refused(folder):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "other",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 10])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(folder / "other.onnx"))
    refused(predict_args(folder / "other.onnx"), folder, "not an exported anomalib model")
    assert not (folder / "out").exists()


def test_a_folder_without_one_model_is_refused(folder):
    (folder / "empty").mkdir()
    refused(predict_args(folder / "empty"), folder, "a folder with one model.xml or model.onnx")


def test_a_missing_runtime_is_one_line_naming_the_extra(folder, monkeypatch):
    (folder / "model.onnx").write_bytes(b"anything")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime raises ImportError
    refused(predict_args(folder / "model.onnx"), folder, "ONNX Runtime is not installed; an exported model needs it: pip install")


def test_a_checkpoint_missing_a_network_is_refused_by_export_which_reads_it_once_and_safely(checkpoint, folder,
                                                                                           monkeypatch):
    import torch

    content = torch.load(checkpoint, map_location="cpu", weights_only=True)
    content["state_dict"] = {key: value for key, value in content["state_dict"].items() if not key.startswith("model.ae.")}
    content["state_dict"]["model.ae.encoder.enconv1.weight"] = torch.zeros(1)  # still an EfficientAd file at a glance
    torch.save(content, folder / "no_autoencoder.ckpt")
    loads, load = [], torch.load
    monkeypatch.setattr(torch, "load", lambda *args, **kwargs: loads.append(kwargs) or load(*args, **kwargs))
    line = refused(["anomalib-folder", "export", "--model_path", "no_autoencoder.ckpt", "--out", "e"], folder,
                   "its weights do not fit EfficientAd-S with teacher_out_channels 384: weights missing for model.ae (27 tensors)")
    assert "nothing was exported" in line and not (folder / "e").exists()
    assert [kwargs.get("weights_only") for kwargs in loads] == [True]
    refused(predict_args(folder / "no_autoencoder.ckpt"), folder,  # predict refuses it too, naming the same weights
            "do not fit the EfficientAd its own settings describe (missing model.ae (27 tensors); of another shape: model.ae")


def test_export_refuses_what_it_cannot_make_before_loading_anything(folder):
    refused(["anomalib-folder", "export", "--model_path", "x.ckpt", "--format", "onnx", "--precision", "int8", "--out", "e"], folder,
            "an ONNX export is fp32")
    refused(["anomalib-folder", "export", "--model_path", "x.ckpt", "--precision", "int8", "--out", "e"], folder,
            "--precision int8 needs --calibration_folder")
    refused(["anomalib-folder", "export", "--model_path", "x.ckpt", "--calibration_folder", "nope", "--out", "e"], folder,
            "--calibration_folder nope: no such folder")
    (folder / "e").mkdir()
    (folder / "e" / "notes.txt").write_text("the user's")
    refused(["anomalib-folder", "export", "--model_path", "x.ckpt", "--out", "e"], folder, "holds files that are not an export of this tool")
    assert sorted(path.name for path in (folder / "e").iterdir()) == ["notes.txt"]
