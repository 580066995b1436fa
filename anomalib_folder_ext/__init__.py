"""Folder-based EfficientAd inference for anomalib: normalised pixel maps and a sortable summary.

The front door for Python (:mod:`anomalib_folder_ext.api`) and the classes a config or a script
builds, loaded on first use; importing the package changes nothing in the process.

Example:
    >>> import anomalib_folder_ext
    >>> sorted(anomalib_folder_ext.__all__)[:4]
    ['AnomalyMapWriter', 'BatchesResult', 'Calibration', 'CalibrationError']
"""

from anomalib_folder_ext.lazy import lazy_face

__version__ = "0.1.0"

_ERRORS = "anomalib_folder_ext.errors"
_NAMES = {
    "predict_folder": "anomalib_folder_ext.api", "predict_batches": "anomalib_folder_ext.api",
    "export_model": "anomalib_folder_ext.api", "ExportResult": "anomalib_folder_ext.api",
    "calibrate": "anomalib_folder_ext.api", "watch_folder": "anomalib_folder_ext.api",
    "WatchResult": "anomalib_folder_ext.outputs.result", "WatchOptions": "anomalib_folder_ext.options",
    "WatchedFolderDataModule": "anomalib_folder_ext.data.stream", "relabel": "anomalib_folder_ext.api", "Calibration": "anomalib_folder_ext.decision.calibration",
    "RunSpec": "anomalib_folder_ext.run.spec", "WriterOptions": "anomalib_folder_ext.options",
    "FolderResult": "anomalib_folder_ext.outputs.result", "BatchesResult": "anomalib_folder_ext.outputs.result",
    "ImageResult": "anomalib_folder_ext.outputs.summary",
    "FolderDataModule": "anomalib_folder_ext.data.datamodule",
    "AnomalyMapWriter": "anomalib_folder_ext.callbacks.writer",
    "ChannelsLast": "anomalib_folder_ext.callbacks.channels_last",
    "InputError": _ERRORS, "FolderInputError": _ERRORS, "OutputDirError": _ERRORS, "ExportedModelError": _ERRORS,
    "CalibrationError": _ERRORS,
    "NoImagePredicted": _ERRORS, "RankLost": _ERRORS, "RunInterrupted": _ERRORS,
}
__all__ = sorted(_NAMES)
__getattr__ = lazy_face(__name__, _NAMES)
