"""What lands on disk and who owns it: the output dir's guard and journal, the maps' maths and files,
``results.csv``, the summaries, the report, a multi-folder run's combined files, and an export's folder."""

from anomalib_folder_ext.lazy import lazy_face

_OWNED, _SUMMARY = "anomalib_folder_ext.outputs.owned", "anomalib_folder_ext.outputs.summary"
_NAMES = {"DirView": _OWNED, "OwnedDir": _OWNED, "ImageResult": _SUMMARY, "read_results": _SUMMARY,
          "check_export_dir": "anomalib_folder_ext.outputs.exportdir"}
__all__ = sorted(_NAMES)
__getattr__ = lazy_face(__name__, _NAMES)
