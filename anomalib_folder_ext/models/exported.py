"""What an exported EfficientAd (OpenVINO IR or ONNX) is: its graph file and its export directory's record.

``anomalib-folder export`` writes a directory: the graph (``model.xml``/``model.bin`` or
``model.onnx``) that gives the raw anomaly map and score, and ``export.json`` with what a run needs
besides the graph: the input size, the checkpoint's post-processing statistics, the checkpoint's
identity. So the same datamodule feeds it and the same writer writes its maps, in every
normalisation mode (:class:`~anomalib_folder_ext.exportedmodel.ExportedModel` runs it). A graph exported by ``anomalib export`` ends with anomalib's post-processor
instead: its maps and scores come out normalised and clipped to [0, 1] (see :class:`ExportInfo`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from anomalib_folder_ext.errors import ExportedModelError

METADATA_NAME = "export.json"
FORMATS = ("openvino", "onnx")
PRECISIONS = ("fp32", "fp16", "int8")
TOOL = "anomalib-folder-ext"
GRAPH_SUFFIXES = (".xml", ".onnx")


@dataclass(frozen=True)
class ExportInfo:
    """An exported model's graph file and what its export directory says about it.

    ``normalized``: the graph ends with anomalib's post-processor (``anomalib export``), so its maps
    and scores are already normalised by the checkpoint's statistics and clipped to [0, 1].
    """

    path: Path
    image_size: tuple[int, int] | None
    precision: str = "fp32"
    normalized: bool = False
    checkpoint: dict = field(default_factory=dict)
    post_processor: dict = field(default_factory=dict)

    @property
    def format(self) -> str:
        return "openvino" if self.path.suffix == ".xml" else "onnx"


def is_exported(path: str | Path) -> bool:
    """Whether ``--model_path`` names an exported model (a graph file or an export directory)."""
    path = Path(path).expanduser()
    return path.suffix in GRAPH_SUFFIXES or path.is_dir()


def graph_file(path: Path) -> Path:
    """The graph of an export directory (its ``export.json`` names it), or ``path`` itself."""
    if not path.is_dir():
        return path
    metadata = path / METADATA_NAME
    if metadata.is_file():
        record = _read_metadata(metadata)
        _check_complete(path, record)
        return path / str(record.get("file", ""))
    graphs = sorted(p for p in path.iterdir() if p.suffix in GRAPH_SUFFIXES)
    if len(graphs) != 1:
        found = ", ".join(p.name for p in graphs) or "none"
        msg = f"exported model {path}: a folder with one model.xml or model.onnx (or an {METADATA_NAME}) is needed; found {found}"
        raise ExportedModelError(msg)
    return graphs[0]


def _read_metadata(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        msg = f"exported model {path}: unreadable ({exc})"
        raise ExportedModelError(msg) from None
    if not isinstance(data, dict) or data.get("tool") != TOOL:
        msg = f"exported model {path}: not written by anomalib-folder export"
        raise ExportedModelError(msg)
    for name, fits in _FIELDS.items():
        if name in data and not fits(data[name]):
            msg = f"exported model {path}: its field {name!r} is malformed ({json.dumps(data[name])[:80]}); export again"
            raise ExportedModelError(msg)
    return data


def _numbers(state: object) -> bool:
    return isinstance(state, dict) and all(v is None or (isinstance(v, int | float) and not isinstance(v, bool))
                                           for v in state.values())


# What each field a run reads must look like: a malformed one is a one-line refusal, not a traceback.
_FIELDS = {
    "file": lambda v: isinstance(v, str) and v in {f"model{suffix}" for suffix in GRAPH_SUFFIXES},
    "precision": lambda v: v in PRECISIONS,
    "input_size": lambda v: isinstance(v, list) and len(v) == 2 and all(type(n) is int and n > 0 for n in v),
    "graph_sha256": lambda v: isinstance(v, str),
    "complete": lambda v: isinstance(v, bool),
    "checkpoint": lambda v: isinstance(v, dict),
    "post_processor": lambda v: isinstance(v, dict) and _numbers(v.get("state", {})) and isinstance(v.get("config", {}), dict),
}


def _check_complete(folder: Path, metadata: dict) -> None:
    if metadata.get("complete") is False:
        msg = f"exported model {folder}: the export was interrupted before it finished; export again"
        raise ExportedModelError(msg)


def _check_describes(graph: Path, metadata_file: Path, metadata: dict) -> None:
    """An ``export.json`` is used only with the graph it describes: a complete export, its file, its bytes."""
    _check_complete(graph.parent, metadata)
    described = metadata.get("file")
    if described and described != graph.name:
        msg = (f"exported model {graph}: {metadata_file} describes {described}, not this file (a graph left from "
               f"another export?); name the folder {graph.parent} or export again")
        raise ExportedModelError(msg)
    expected = metadata.get("graph_sha256")  # exports of earlier versions do not record it
    if not graph.is_file():
        msg = f"exported model {graph}: no such file (named by {metadata_file})"
        raise ExportedModelError(msg)
    from anomalib_folder_ext.models.checkpoint import content_digest

    if expected and content_digest(graph) != expected:
        msg = f"exported model {graph}: not the graph {metadata_file} was written for (changed since the export); export again"
        raise ExportedModelError(msg)


def model_identity(path: str | Path) -> str:
    """What a run's results are tied to (resume compares it): a checkpoint's bytes; an exported graph's
    bytes together with its ``export.json``, which holds the statistics and thresholds its numbers
    depend on (a re-export with new ones is another model, even with the same graph)."""
    from anomalib_folder_ext.models.checkpoint import content_digest

    path = Path(path).expanduser()
    metadata = path.parent / METADATA_NAME
    if path.suffix not in GRAPH_SUFFIXES or not metadata.is_file():
        return content_digest(path)
    return hashlib.sha256(f"{content_digest(path)} {content_digest(metadata)}".encode()).hexdigest()


def read_export(path: str | Path) -> ExportInfo:
    """Check an exported model before anything loads: its files, its metadata and its graph's
    inputs and outputs; one line naming the file when something is wrong."""
    from anomalib_folder_ext.models.runtimes import open_runtime

    graph = graph_file(Path(path).expanduser())
    metadata_file = graph.parent / METADATA_NAME
    metadata = _read_metadata(metadata_file) if metadata_file.is_file() else {}
    if metadata:
        _check_describes(graph, metadata_file, metadata)
    runtime = open_runtime(graph)
    outputs = set(runtime.outputs)
    if not {"anomaly_map", "pred_score"} <= outputs or len(runtime.inputs) != 1:
        msg = (f"exported model {graph}: not an exported anomalib model (inputs {[name for name, _ in runtime.inputs]}, "
               f"outputs {sorted(outputs)}; expected one image input and anomaly_map, pred_score)")
        raise ExportedModelError(msg)
    shape = runtime.inputs[0][1]
    static = [int(str(size)) for size in shape[2:] if str(size).isdigit()] if len(shape) == 4 else []
    if len(shape) != 4 or str(shape[1]) not in {"3", "?"}:
        msg = f"exported model {graph}: its input takes {shape}, not a batch of RGB images (N, 3, H, W)"
        raise ExportedModelError(msg)
    size = tuple(metadata.get("input_size") or (static if len(static) == 2 else ())) or None
    if metadata and static and list(size) != static:
        msg = f"exported model {graph}: its graph takes {static[0]}x{static[1]} images, its {METADATA_NAME} says {size}"
        raise ExportedModelError(msg)
    return ExportInfo(
        path=graph, image_size=size, precision=str(metadata.get("precision", "fp32")),
        normalized=not metadata and "pred_label" in outputs,
        checkpoint=dict(metadata.get("checkpoint") or {}), post_processor=dict(metadata.get("post_processor") or {}),
    )
