"""The runtimes an exported model runs on: OpenVINO (an IR ``.xml``/``.bin`` or an ``.onnx``) and
ONNX Runtime (an ``.onnx``). Each takes a batch of images and gives back the graph's outputs by name.

Imported only when an exported model is used: the checkpoint path needs none of them.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from anomalib_folder_ext.errors import ExportedModelError

EXTRA = "pip install 'anomalib-folder-ext[export]'"

# Lightning's precision names and the OpenVINO inference precision each one means on a CPU.
OPENVINO_PRECISION = {"32-true": "f32", "32": "f32", "bf16-mixed": "bf16", "bf16-true": "bf16",
                      "16-mixed": "f16", "16-true": "f16"}


def _import(module: str, backend: str):  # noqa: ANN202
    try:
        return __import__(module)
    except ImportError:
        msg = f"{backend} is not installed; an exported model needs it: {EXTRA}"
        raise ExportedModelError(msg) from None


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return (text[:240] + "…") if len(text) > 240 else text or type(exc).__name__


class OpenVINORuntime:
    """A model compiled by OpenVINO for the CPU, at the precision the run asked for.

    OpenVINO picks bf16 by itself on CPUs that have it; the hint is always set, so ``32-true``
    stays f32 and the summary can say what ran.
    """

    backend = "openvino"

    def __init__(self, path: Path) -> None:
        ov = _import("openvino", "OpenVINO")
        self.path, self.version = path, ov.get_version().split("-")[0]
        if path.suffix == ".xml" and not path.with_suffix(".bin").is_file():
            msg = f"exported model {path}: its weights {path.with_suffix('.bin').name} are missing (an IR is an .xml and a .bin)"
            raise ExportedModelError(msg)
        self._core = ov.Core()
        try:
            self.graph = self._core.read_model(str(path))
        except Exception as exc:  # noqa: BLE001 - OpenVINO raises RuntimeError and its own types
            msg = f"exported model {path}: OpenVINO cannot read it ({_reason(exc)})"
            raise ExportedModelError(msg) from None
        self.inputs = [(port.get_any_name(), list(port.get_partial_shape())) for port in self.graph.inputs]
        self.outputs = [port.get_any_name() for port in self.graph.outputs]
        self.precision: str | None = None
        self._compiled = None

    def compile(self, precision: str, threads: int | None = None) -> None:
        hint = OPENVINO_PRECISION.get(str(precision))
        if hint is None:
            msg = f"precision {precision}: OpenVINO runs 32-true (f32), bf16-mixed (bf16) or 16-mixed (f16)"
            raise ExportedModelError(msg)
        config = {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        try:
            self._compiled = self._core.compile_model(self.graph, "CPU", config)
        except Exception as exc:  # noqa: BLE001
            msg = f"exported model {self.path}: OpenVINO cannot compile it for the CPU at {hint} ({_reason(exc)})"
            raise ExportedModelError(msg) from None
        # what OpenVINO will compute in: f32 where the CPU lacks the asked-for type
        self.precision = self._compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()

    def run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        result = self._compiled(images)
        return {port.get_any_name(): np.asarray(value) for port, value in result.items()}


class OnnxRuntime:
    """An ``.onnx`` run by ONNX Runtime on the CPU, which computes in f32 only."""

    backend = "onnxruntime"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._ort = _import("onnxruntime", "ONNX Runtime")
        self.version = self._ort.__version__
        self._session = None
        self._open(threads=None)
        self.inputs = [(item.name, list(item.shape)) for item in self._session.get_inputs()]
        self.outputs = [item.name for item in self._session.get_outputs()]
        self.precision: str | None = None

    def _open(self, threads: int | None) -> None:
        options = self._ort.SessionOptions()
        options.log_severity_level = 3  # errors only: its warnings are not the user's to act on
        if threads:
            options.intra_op_num_threads = threads
        try:
            self._session = self._ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            msg = f"exported model {self.path}: ONNX Runtime cannot load it ({_reason(exc)})"
            raise ExportedModelError(msg) from None

    def compile(self, precision: str, threads: int | None = None) -> None:
        if str(precision) not in {"32-true", "32"}:
            msg = f"precision {precision}: ONNX Runtime runs this model in f32 only (32-true); OpenVINO runs bf16 and f16"
            raise ExportedModelError(msg)
        if threads:
            self._open(threads)
        self.precision = "f32"

    def run(self, images: np.ndarray) -> dict[str, np.ndarray]:
        values = self._session.run(None, {self.inputs[0][0]: images})
        return dict(zip(self.outputs, values, strict=True))


def open_runtime(path: Path, backend: str | None = None) -> OpenVINORuntime | OnnxRuntime:
    """The runtime for ``path``: an ``.xml`` is OpenVINO's; an ``.onnx`` runs on ``backend``
    (``openvino`` or ``onnxruntime``; ONNX Runtime when not given)."""
    if not path.is_file():
        msg = f"exported model {path}: no such file"
        raise ExportedModelError(msg)
    if path.suffix == ".xml" or backend == "openvino":
        return OpenVINORuntime(path)
    if path.suffix == ".onnx":
        return OnnxRuntime(path)
    msg = f"exported model {path}: not an OpenVINO IR (.xml) or an ONNX file (.onnx)"
    raise ExportedModelError(msg)


def default_threads() -> int | None:
    """``None``: the runtime's own default, which follows the CPU (its cores, its hyper-threads). The
    cores this process may use when it is held to fewer than the machine has (``taskset``, a
    container's cpuset), which a runtime counting the machine's cores would oversubscribe."""
    if not hasattr(os, "sched_getaffinity"):
        return None
    allowed = len(os.sched_getaffinity(0))
    return allowed if allowed < (os.cpu_count() or allowed) else None
