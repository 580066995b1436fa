"""The model's side: what an EfficientAd checkpoint holds, and exported models run as a LightningModule.

The runtimes (OpenVINO, ONNX Runtime) are imported only when an exported model runs.
"""

from anomalib_folder_ext.lazy import lazy_face

_CHECKPOINT, _EXPORTED = "anomalib_folder_ext.models.checkpoint", "anomalib_folder_ext.models.exported"
_NAMES = {"EfficientAdCheckpoint": _CHECKPOINT, "content_digest": _CHECKPOINT, "read_checkpoint": _CHECKPOINT,
          "load_checkpoint": _CHECKPOINT, "ExportInfo": _EXPORTED, "is_exported": _EXPORTED, "read_export": _EXPORTED,
          "model_identity": _EXPORTED,
          "ExportedModel": "anomalib_folder_ext.models.exportedmodel"}
__all__ = sorted(_NAMES)
__getattr__ = lazy_face(__name__, _NAMES)
