"""The decision: which parts are defective and where, from thresholds fitted on good parts.

Pure numbers, no model and no files: the rule (:mod:`.rule`), thresholds fitted on good parts and what
a sample can show (:mod:`.fit`), and the calibration file's content (:mod:`.calibration`).
"""

from anomalib_folder_ext.lazy import lazy_face

_RULE, _FIT, _CALIBRATION = ("anomalib_folder_ext.decision.rule", "anomalib_folder_ext.decision.fit",
                             "anomalib_folder_ext.decision.calibration")
_NAMES = {"Thresholds": _RULE, "mask_regions": _RULE, "DECISIONS": _RULE,
          "fit_threshold": _FIT, "ThresholdFit": _FIT, "NotEnoughParts": _FIT, "auroc": _FIT,
          "separating_threshold": _FIT, "TopValues": _FIT, "pixel_threshold": _FIT,
          "Calibration": _CALIBRATION, "ModelRun": _CALIBRATION, "parse_calibration": _CALIBRATION}
__all__ = sorted(_NAMES)
__getattr__ = lazy_face(__name__, _NAMES)
