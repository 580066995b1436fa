"""``anomalib-folder export``: an EfficientAd checkpoint as an OpenVINO IR or an ONNX file that gives
the raw anomaly map and score, with the ``export.json`` a run needs, checked against the checkpoint.

anomalib's own export (``to_onnx``, ``to_openvino``) does the conversion, with the model's pre- and
post-processor left out of the graph: the folder datamodule resizes as for the checkpoint, and the
writer normalises as for the checkpoint (every ``normalization`` mode). INT8 is NNCF's
post-training quantisation on the calibration folder's images.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from anomalib_folder_ext.models.checkpoint import CheckpointError, content_digest, load_checkpoint, weights_mismatch
from anomalib_folder_ext.errors import ExportedModelError, InputError
from anomalib_folder_ext.models.exported import FORMATS, METADATA_NAME, PRECISIONS, TOOL
from anomalib_folder_ext.models.exportedmodel import ExportedModel, post_processor_state
from anomalib_folder_ext.models.runtimes import EXTRA
from anomalib_folder_ext.outputs.exportdir import check_export_dir, write_export

CHECK_IMAGES = 8
SCALE_KEPT = 1.25  # a defect's score within this factor of the checkpoint's: the export keeps the scale


@dataclasses.dataclass(frozen=True)
class Parity:
    """The exported model against the checkpoint on the same images (both in f32)."""

    images: int
    map_difference: float
    map_range: float
    score_difference: float
    defect_score: float = 0.0  # the highest score of the defect probes (:func:`defect_probes`), checkpoint
    defect_score_exported: float = 0.0  # the same probe's score, export

    def text(self) -> str:
        share = self.map_difference / self.map_range if self.map_range > 0 else 0.0
        return (f"vs the checkpoint on {self.images} images: largest map difference {self.map_difference:.2g} "
                f"({share:.2%} of the map range), largest score difference {self.score_difference:.2g}")

    def scale_warning(self) -> str | None:
        """What a quantised graph does to the scale of scores: the images the checks ran on are good
        parts, whose scores it keeps; a defect's it may clip, and the threshold means another thing.

        Example:
            >>> Parity(8, 0.1, 1.0, 0.01, defect_score=4.31, defect_score_exported=0.54).scale_warning()[:64]
            'warning: this export changes the scale of scores: a synthetic de'
            >>> Parity(8, 0.1, 1.0, 0.01, defect_score=4.31, defect_score_exported=4.1).scale_warning() is None
            True
        """
        if self.defect_score <= 0 or 1 / SCALE_KEPT <= self.defect_score_exported / self.defect_score <= SCALE_KEPT:
            return None
        return (f"warning: this export changes the scale of scores: a synthetic defect (noise pasted on a check image) "
                f"scores {self.defect_score:.3g} with the checkpoint and {self.defect_score_exported:.3g} with the "
                "export, so the checkpoint's thresholds (pred_label, normalization model) and any threshold chosen "
                "on the checkpoint's scores mean something else here; choose thresholds on this export's own scores")


def load_checkpoint_model(path: Path):  # noqa: ANN201
    """The checkpoint's EfficientAd as predict loads it (every weight, or a refusal naming what is
    missing), built from its own settings, in eval mode on the CPU; and the checkpoint as read (once)."""
    from anomalib.models import EfficientAd

    checkpoint = load_checkpoint(path)
    settings = checkpoint.settings
    model = EfficientAd(model_size=settings.model_size, teacher_out_channels=settings.teacher_out_channels,
                        padding=settings.padding, pad_maps=settings.pad_maps, visualizer=False, evaluator=False)
    model.on_load_checkpoint(checkpoint.content)
    problem = weights_mismatch(model.state_dict(), checkpoint.content["state_dict"])
    if problem:
        msg = (f"checkpoint {path}: its weights do not fit EfficientAd-{settings.model_size[0].upper()} with "
               f"teacher_out_channels {settings.teacher_out_channels}: {problem}; nothing was exported")
        raise CheckpointError(msg)
    model.load_state_dict(checkpoint.content["state_dict"], strict=True)
    return model.eval(), checkpoint


def _check_options(fmt: str, precision: str, calibration: Path | None) -> None:
    if fmt not in FORMATS:
        msg = f"--format {fmt}: choose one of {', '.join(FORMATS)}"
        raise InputError(msg)
    if precision not in PRECISIONS:
        msg = f"--precision {precision}: choose one of {', '.join(PRECISIONS)}"
        raise InputError(msg)
    if fmt == "onnx" and precision != "fp32":
        msg = f"--precision {precision}: an ONNX export is fp32; fp16 and int8 are OpenVINO exports (--format openvino)"
        raise InputError(msg)
    if precision == "int8" and calibration is None:
        msg = "--precision int8 needs --calibration_folder: images like the ones to inspect, to calibrate the quantisation"
        raise InputError(msg)
    for module, name in (("onnx", "onnx"), ("onnxscript", "onnxscript"), *([("openvino", "OpenVINO")] if fmt == "openvino" else []),
                         *([("nncf", "NNCF")] if precision == "int8" else [])):
        try:
            __import__(module)
        except ImportError:
            msg = f"{name} is not installed; export needs it: {EXTRA}"
            raise ExportedModelError(msg) from None


def calibration_images(folder: Path, count: int) -> list[str]:
    """The first ``count`` images of the calibration folder, found before anything loads."""
    from anomalib_folder_ext.images.discover import list_folder_images

    try:
        return list_folder_images(folder)[:count]
    except InputError as exc:  # worded for predict's folder_path; here it is the calibration folder
        raise InputError(exc.template.replace("folder_path", "--calibration_folder", 1), option="calibration_folder") from None


def sample_images(folder: Path | None, names: list[str], size: tuple[int, int], count: int) -> np.ndarray:
    """The images ``names`` of ``folder`` exactly as the folder datamodule feeds them (decoded, resized,
    in [0, 1]); ``count`` images of smooth noise when no folder is given."""
    if folder is None:
        noise = torch.from_numpy(np.random.default_rng(0).random((count, 3, *size), dtype=np.float32))
        return torch.nn.functional.avg_pool2d(noise, 3, 1, 1).numpy()
    from anomalib_folder_ext.data.batch import to_float
    from anomalib_folder_ext.data.datamodule import FolderImageDataset

    dataset = FolderImageDataset(folder, names, size)
    items = [dataset[index] for index in range(len(dataset))]
    failed = [item for item in items if item.error]
    if failed or not items:
        msg = f"--calibration_folder {folder}: " + (failed[0].error if failed else "no images")
        raise InputError(msg)
    from torchvision.transforms.v2 import Resize

    # the model's pre-processor resizes a batch of one size (the datamodule, a batch of several sizes)
    return Resize(list(size), antialias=True)(to_float(dataset.collate(items).image)).contiguous().numpy()


def _convert(model, fmt: str, precision: str, size: tuple[int, int], work: Path) -> list[Path]:  # noqa: ANN001
    """anomalib's export of the bare network (no pre- or post-processor); its console lines kept out."""
    from anomalib.deploy import CompressionType

    raw = copy.deepcopy(model)
    raw.pre_processor, raw.post_processor = None, None
    onnx_kwargs = {"opset_version": 18, "verbose": False}
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        if fmt == "onnx":  # one file: the weights inside, not beside it
            return [raw.to_onnx(work, input_size=size, external_data=False, **onnx_kwargs)]
        compression = CompressionType.FP16 if precision == "fp16" else None
        xml = raw.to_openvino(work, input_size=size, compression_type=compression, onnx_kwargs=onnx_kwargs)
    return [xml, xml.with_suffix(".bin")]


def _quantize(xml: Path, calibration: np.ndarray) -> list[Path]:
    """NNCF's post-training INT8 quantisation of the IR at ``xml``; the quantised IR's files.

    Saved under another name: OpenVINO maps the source's weights into memory while it reads them.
    """
    import logging

    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)  # NNCF's import asks torch about CUDA
    import nncf
    import openvino as ov

    graph = ov.Core().read_model(str(xml))
    data = nncf.Dataset([calibration[index:index + 1] for index in range(len(calibration))])
    with contextlib.redirect_stdout(io.StringIO()):
        quantized = nncf.quantize(graph, data, subset_size=len(calibration))
    target = xml.with_name(f"{xml.stem}_int8.xml")
    ov.save_model(quantized, str(target), compress_to_fp16=False)
    return [target, target.with_suffix(".bin")]


def defect_probes(images: np.ndarray) -> np.ndarray:
    """The check images with a square of noise over their middle quarter: parts with a large defect,
    whose scores lie far above the good parts' a quantisation was calibrated on."""
    probes = images.copy()
    height, width = probes.shape[-2:]
    rows, columns = slice(height // 4, height - height // 4), slice(width // 4, width - width // 4)
    noise = np.random.default_rng(0).random(probes[..., rows, columns].shape, dtype=np.float32)
    probes[..., rows, columns] = noise
    return probes


def measure_parity(model, exported: ExportedModel, images: np.ndarray) -> Parity:  # noqa: ANN001
    def both(batch: np.ndarray) -> tuple:  # the checkpoint's outputs and the export's
        with torch.no_grad():
            reference = model.model(torch.from_numpy(batch))
        return reference, exported.runtime.run(np.ascontiguousarray(batch, dtype=np.float32))

    reference, outputs = both(images)
    maps, scores = reference.anomaly_map.numpy(), reference.pred_score.numpy().reshape(-1)
    probed, probed_exported = both(defect_probes(images))
    probe_scores = probed.pred_score.numpy().reshape(-1)
    highest = int(np.argmax(probe_scores))
    return Parity(
        images=len(images),
        map_difference=float(np.abs(outputs["anomaly_map"] - maps).max()),
        map_range=float(maps.max() - maps.min()),
        score_difference=float(np.abs(outputs["pred_score"].reshape(-1) - scores).max()),
        defect_score=float(probe_scores[highest]),
        defect_score_exported=float(probed_exported["pred_score"].reshape(-1)[highest]),
    )


def export_checkpoint(checkpoint: str | Path, fmt: str, out: str | Path, precision: str = "fp32",
                      calibration_folder: str | Path | None = None) -> tuple[Path, Parity]:
    """Export ``checkpoint`` into the directory ``out``; returns the graph's path and its parity."""
    checkpoint, out = Path(checkpoint).expanduser(), Path(out).expanduser()
    calibration = Path(calibration_folder).expanduser() if calibration_folder else None
    _check_options(fmt, precision, calibration)
    count = 300 if precision == "int8" else CHECK_IMAGES
    names = calibration_images(calibration, count) if calibration is not None else []
    check_export_dir(out)
    model, loaded = load_checkpoint_model(checkpoint)
    size = tuple(loaded.settings.image_size or (256, 256))
    images = sample_images(calibration, names, size, count)
    with tempfile.TemporaryDirectory(prefix="anomalib-folder-export-") as work:
        converted = _convert(model, fmt, precision, size, Path(work))
        if precision == "int8":
            converted = _quantize(converted[0], images)
        files = {}
        for file in converted:  # under the names the export dir gives them, to check them there
            files[f"model{file.suffix}"] = file.replace(Path(work) / f"model{file.suffix}")
        graph = files[f"model{converted[0].suffix}"]
        metadata = {
            "tool": TOOL, "model": "EfficientAd", "file": graph.name, "format": fmt, "precision": precision,
            "graph_sha256": content_digest(graph),
            "input_size": list(size), "outputs": "raw anomaly_map and pred_score (no pre- or post-processing)",
            "checkpoint": {"path": str(checkpoint.resolve()), "sha256": loaded.sha256},
            "post_processor": post_processor_state(model.post_processor),
            "versions": _versions(fmt),
        }
        (Path(work) / METADATA_NAME).write_text(json.dumps(metadata, indent=2) + "\n")
        exported = ExportedModel(work)
        exported.runtime.compile("32-true")
        parity = measure_parity(model, exported, images[:CHECK_IMAGES])
        del exported
        metadata["parity"] = dataclasses.asdict(parity)
        write_export(out, files, metadata)
    return out / graph.name, parity


def _versions(fmt: str) -> dict:
    import anomalib

    versions = {"anomalib": anomalib.__version__, "torch": torch.__version__.split("+")[0]}
    if fmt == "openvino":
        import openvino as ov

        versions["openvino"] = ov.get_version().split("-")[0]
    return versions


def run_export(options) -> int:  # noqa: ANN001 - the parsed ``anomalib-folder export`` flags
    """``anomalib-folder export``: export, check, and say where the model is and how close it is."""
    kind = {"openvino": "OpenVINO IR", "onnx": "ONNX"}[options.format]
    print(f"exporting {options.model_path} as {kind} ({options.precision}) ...", flush=True)
    graph, parity = export_checkpoint(options.model_path, options.format, options.out, options.precision,
                                      options.calibration_folder)
    files = ", ".join(sorted(path.name for path in graph.parent.iterdir() if not path.name.startswith(".")))
    print(f"  {parity.text()}")
    if parity.scale_warning():
        print(parity.scale_warning(), file=sys.stderr, flush=True)
    print(f"{graph.parent}/: {kind} ({options.precision}) of {Path(options.model_path).name} — {files}; "
          f"predict with: anomalib-folder predict --model_path {graph.parent} --folder_path DIR")
    return 0
