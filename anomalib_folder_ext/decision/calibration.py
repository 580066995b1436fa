"""``calibration.json``: thresholds fitted on good parts, for one model as it ran.

A threshold means something only on the scores of the model, runtime, precision and image size it
was fitted on (an int8 export's scores are not its checkpoint's), so the file records them and a run
of anything else is refused (:meth:`Calibration.refusal`). Reading and checking are pure: the file's
text in, a :class:`Calibration` or one line saying what is wrong out.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from anomalib_folder_ext.decision.rule import Thresholds
from anomalib_folder_ext.errors import CalibrationError

KIND = "anomalib-folder-ext calibration"
VERSION = 1


@dataclass(frozen=True)
class ModelRun:
    """What decides a model's scores: its content, its runtime and precision, the input size."""

    identity: str  # the checkpoint's content digest (an export's: its graph and export.json)
    runtime: str  # "torch", or an exported model's runtime
    precision: str
    image_size: tuple[int, int]
    path: str = ""  # where it was when calibrated (shown, never compared)

    @classmethod
    def from_settings(cls, settings: dict, image_size: tuple[int, int], path: str = "") -> ModelRun:
        """The model run a run's settings describe (``outputs.runplan.run_settings``: the model's identity, and
        its precision with an exported model's runtime, ``32-true on openvino``).

        Example:
            >>> ModelRun.from_settings({"checkpoint": "sha256:1", "precision": "32-true on openvino"}, (256, 256))
            ModelRun(identity='sha256:1', runtime='openvino', precision='32-true', image_size=(256, 256), path='')
        """
        precision, _, runtime = str(settings.get("precision", "")).partition(" on ")
        return cls(str(settings.get("checkpoint") or ""), runtime or "torch", precision, tuple(image_size), path)

    def differences(self, other: ModelRun) -> list[str]:
        """What differs from ``other``, in words; empty when both score alike.

        Example:
            >>> a = ModelRun("sha256:1111", "torch", "32-true", (256, 256))
            >>> a.differences(ModelRun("sha256:2222", "torch", "bf16-mixed", (256, 256)))
            ['another model (sha256:1111 vs sha256:2222)', 'precision 32-true vs bf16-mixed']
        """
        found = []
        if self.identity != other.identity:
            found.append(f"another model ({self.identity[:19]} vs {other.identity[:19]})")
        for name in ("runtime", "precision", "image_size"):
            mine, theirs = getattr(self, name), getattr(other, name)
            if tuple(mine) != tuple(theirs) if name == "image_size" else mine != theirs:
                shown = (lambda size: f"{size[0]}x{size[1]}") if name == "image_size" else str
                found.append(f"{name.replace('_', ' ')} {shown(mine)} vs {shown(theirs)}")
        return found


@dataclass(frozen=True)
class Calibration:
    """Thresholds in raw units and what the calibration measured; the JSON file's content."""

    image_threshold: float
    pixel_threshold: float | None
    model: ModelRun
    target_fpr: float
    uncertain_below: float | None = None
    good: dict = field(default_factory=dict)  # n, expected and upper FPR, quantiles, folder
    pixels: dict = field(default_factory=dict)  # the pixel threshold's own numbers
    defect: dict = field(default_factory=dict)  # recall, AUROC, the separating threshold (with defects)
    checkpoint_thresholds: dict = field(default_factory=dict)  # the model's own, for comparison
    path: str = field(default="", compare=False)  # the file it was read from

    def to_json(self) -> str:
        values = asdict(self)
        del values["path"]
        values["model"]["image_size"] = list(self.model.image_size)
        return json.dumps({"kind": KIND, "version": VERSION, **values}, indent=1) + "\n"

    def thresholds(self, source: str | None = None) -> Thresholds:
        source = source or f"calibration {self.path or 'file'}"
        return Thresholds(image=self.image_threshold, pixel=self.pixel_threshold, uncertain_below=self.uncertain_below,
                          image_source=source, pixel_source=source)

    def refusal(self, run: ModelRun, subject: str = "this run") -> str | None:
        """Why this calibration cannot decide ``run``'s parts (``subject`` names the run); ``None`` when it can."""
        differences = self.model.differences(run)
        if not differences:
            return None
        return (f"calibration {self.path}: made for {', '.join(differences)} (calibration vs {subject}); its "
                "thresholds mean something else here: calibrate this model as it runs (anomalib-folder calibrate)")

    def check(self, run: ModelRun, subject: str = "this run") -> None:
        """:meth:`refusal` as a :class:`CalibrationError`, for the paths that refuse a run."""
        refusal = self.refusal(run, subject)
        if refusal:
            raise CalibrationError(refusal)

def parse_calibration(text: str, path: str = "") -> Calibration:
    """A :class:`Calibration` from its file's text; :class:`CalibrationError` naming what is wrong.

    Example:
        >>> parse_calibration('{"kind": "something else"}', "c.json")
        Traceback (most recent call last):
        ...
        anomalib_folder_ext.errors.CalibrationError: calibration c.json: not a calibration of anomalib-folder (no kind "anomalib-folder-ext calibration"); make one with anomalib-folder calibrate
    """
    where = f"calibration {path}"
    try:
        values = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CalibrationError(f"{where}: not JSON ({exc})") from None
    if not isinstance(values, dict) or values.get("kind") != KIND:
        raise CalibrationError(f'{where}: not a calibration of anomalib-folder (no kind "{KIND}"); make one with '
                                   "anomalib-folder calibrate")
    if values.get("version") != VERSION:
        raise CalibrationError(f"{where}: version {values.get('version')!r}, this tool reads version {VERSION}")

    def number(name: str, source: dict = values, optional: bool = False) -> float | None:
        value = source.get(name)
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise CalibrationError(f"{where}: {name} {value!r} is not a finite number")
        return float(value)

    model = values.get("model")
    if not isinstance(model, dict):
        raise CalibrationError(f"{where}: no model record")
    size = model.get("image_size")
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(side, int) and side > 0 for side in size)):
        raise CalibrationError(f"{where}: model.image_size {size!r} is not [height, width]")
    for name in ("identity", "runtime", "precision"):
        if not isinstance(model.get(name), str) or not model[name]:
            raise CalibrationError(f"{where}: model.{name} {model.get(name)!r} is missing")
    run = ModelRun(model["identity"], model["runtime"], model["precision"], (size[0], size[1]), str(model.get("path", "")))
    try:
        calibration = Calibration(
            image_threshold=number("image_threshold"), pixel_threshold=number("pixel_threshold", optional=True),
            model=run, target_fpr=number("target_fpr"), uncertain_below=number("uncertain_below", optional=True),
            good=dict(values.get("good") or {}), pixels=dict(values.get("pixels") or {}),
            defect=dict(values.get("defect") or {}), checkpoint_thresholds=dict(values.get("checkpoint_thresholds") or {}),
            path=path,
        )
        calibration.thresholds()  # the rule's own checks: a band below the image threshold
    except CalibrationError:
        raise
    except (TypeError, ValueError) as exc:
        raise CalibrationError(f"{where}: {exc}") from None
    return calibration


def read_calibration(path: str | None) -> Calibration | None:
    """The calibration file ``path`` (``None``: no calibration); one line naming the file when it cannot be used."""
    if not path:
        return None
    file = Path(path).expanduser()
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CalibrationError(f"calibration {path}: no such file; make one with anomalib-folder calibrate") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CalibrationError(f"calibration {path}: cannot be read ({exc.__class__.__name__}: {exc})") from None
    return parse_calibration(text, str(path))


def given_thresholds(calibration: Calibration | None, threshold: float | None = None, pixel_threshold: float | None = None,
                     uncertain_below: float | None = None) -> dict[str, tuple[float, str]]:
    """The thresholds an option or the calibration sets, each with where it came from (the option first; a
    band comes with the image threshold it belongs to). Resume compares their numbers.

    Example:
        >>> run = ModelRun("sha256:1", "torch", "32-true", (256, 256))
        >>> given_thresholds(Calibration(0.4, 0.3, run, 0.01, uncertain_below=0.35, path="c.json"), threshold=0.5)
        {'image': (0.5, 'threshold option'), 'pixel': (0.3, 'calibration c.json')}
    """
    from_file = f"calibration {calibration.path}" if calibration is not None else ""
    calibrated = ((calibration.image_threshold, calibration.pixel_threshold,
                   calibration.uncertain_below if threshold is None else None) if calibration is not None
                  else (None, None, None))
    found = {}
    for name, option, value, fitted in zip(("image", "pixel", "uncertain_below"),
                                           ("threshold", "pixel_threshold", "uncertain_below"),
                                           (threshold, pixel_threshold, uncertain_below), calibrated, strict=True):
        if value is not None:
            found[name] = (float(value), f"{option} option")
        elif fitted is not None:
            found[name] = (fitted, from_file)
    return found


def thresholds_in_force(given: dict[str, tuple[float, str]], model_image: float | None,
                        model_pixel: float | None) -> Thresholds:
    """The thresholds that decide: each the given one, else the model's own (its checkpoint's)."""
    image, image_source = given.get("image", (model_image, "checkpoint"))
    pixel, pixel_source = given.get("pixel", (model_pixel, "checkpoint"))
    try:
        return Thresholds(image=image, pixel=pixel, uncertain_below=given.get("uncertain_below", (None, ""))[0],
                          image_source=image_source, pixel_source=pixel_source)
    except ValueError as exc:
        raise CalibrationError(str(exc), option="uncertain_below") from None

