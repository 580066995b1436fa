"""Every option of the writer, once: its default, its choices, its check and its documentation.

``anomalib-folder``'s parser, the writer callback (from a config), the multi-folder loop and the
docs all read :class:`WriterOptions`: the help text of a flag, the ``Args`` of the writer's
docstring (which ``anomalib predict --help`` shows) and the README's tables come from the
``doc`` of each field, and the choices of a flag from the enums below.
"""

from __future__ import annotations

import math
import os
from dataclasses import MISSING, dataclass, field, fields, replace
from enum import Enum
from pathlib import Path

from anomalib_folder_ext.errors import CalibrationError, FolderInputError, InputError


class _Choice(str, Enum):
    """An option's allowed values: each member is its own string, in messages and configs alike."""

    def __str__(self) -> str:
        return self.value

    __format__ = str.__format__


class Normalization(_Choice):
    per_image = "per_image"
    model = "model"
    fixed = "fixed"


class MapSize(_Choice):
    model = "model"
    original = "original"


class OverlayFormat(_Choice):
    jpg = "jpg"
    png = "png"


def choices(kind: type[Enum]) -> list[str]:
    """The values of an option's enum, as argparse and the messages spell them.

    Example:
        >>> choices(Normalization)
        ['per_image', 'model', 'fixed']
    """
    return [member.value for member in kind]


def _option(default: object, doc: str) -> object:
    return field(default=default, metadata={"doc": doc})


@dataclass(frozen=True)
class WriterOptions:
    """What the writer writes and how; checked when made, so a bad value fails before the model loads.

    Example:
        >>> options = WriterOptions(save_as_image=False, normalization="fixed", vmin=0.0, vmax=2.0)
        >>> options.normalization_text(), options.outputs_text()
        ('fixed 0 2', 'npy')
        >>> WriterOptions(map_size="huge")
        Traceback (most recent call last):
        ...
        anomalib_folder_ext.errors.InputError: map_size 'huge': use model or original
    """

    save_as_npy: bool = _option(True, "Write <stem>_anomaly.npy: the map, H x W float32 in [0, 1].")
    save_as_image: bool = _option(True, "Write <stem>_anomaly.png: the map through the colormap.")
    colormap: str = _option("jet", "Any matplotlib colormap, applied as a 256-entry lookup table.")
    png_compress_level: int = _option(1, "zlib level 0-9 of the PNGs; 1 is fast and near the smallest "
                                         "(docs/PERFORMANCE.md).")
    write_workers: int | None = _option(None, "Threads encoding and writing files while the model runs; "
                                              "null: min(8, CPUs).")
    top_count: int = _option(10, "Length of the most-anomalous list in the text summary.")
    release_maps: bool = _option(True, "Drop each batch's map once handed over, so anomalib's PostProcessor skips "
                                       "pixel work nothing reads; the maps are kept while the model's visualizer "
                                       "is on (it draws them), and false keeps them for another callback.")
    normalization: Normalization = _option(Normalization.per_image,
                                           "How each map is scaled to [0, 1]: per_image by its own min and max "
                                           "(every max is 1); model by anomalib's pixel normalisation from the "
                                           "checkpoint (0.5 = its pixel threshold, comparable across images); "
                                           "fixed by vmin and vmax of the raw map. Clipped.")
    vmin: float | None = _option(None, "With normalization fixed only: the raw value shown as 0 (finite).")
    vmax: float | None = _option(None, "With normalization fixed only: the raw value shown as 1 (finite).")
    map_size: MapSize = _option(MapSize.model, "model: maps at the model's input size; original: each map "
                                               "resized (bilinearly, on the device) to its image's size.")
    save_overlay: bool = _option(False, "Also write <stem>_overlay.jpg: the colour-mapped map blended over "
                                        "the input image, at the map's size.")
    overlay_alpha: float = _option(0.5, "The map's weight in the overlay: 0 only the image, 1 only the map.")
    overlay_format: OverlayFormat = _option(OverlayFormat.jpg, "Overlay file format: jpg (small) or png (lossless).")
    calibration: str | None = _option(None, "A calibration.json of anomalib-folder calibrate: its image and pixel "
                                            "thresholds (raw units) decide the parts; refused for another model, "
                                            "runtime, precision or image size.")
    threshold: float | None = _option(None, "The image threshold in raw score units: a part scoring at or above it "
                                            "is a defect (overrides the calibration's and the checkpoint's).")
    pixel_threshold: float | None = _option(None, "The pixel threshold in raw map units: the mask and defect area "
                                                  "(overrides the calibration's and the checkpoint's).")
    uncertain_below: float | None = _option(None, "Scores from this up to the image threshold are decided uncertain "
                                                  "instead of ok (raw units; a calibration may set it).")
    save_mask: bool = _option(False, "Also write <stem>_mask.png: the pixels at or above the pixel threshold "
                                     "(white), at the map's size.")
    report: bool = _option(False, "At the end, also write report.html (counts, score histogram, the most "
                                  "anomalous images) and report.png (the same as one picture).")
    report_top_k: int = _option(12, "How many of the most anomalous images the report shows.")
    resume: bool = _option(False, "Finish an interrupted run in the same output dir: images it finished are "
                                  "not predicted again, and results.csv comes out as an uninterrupted run's.")
    overwrite: bool = _option(False, "Replace an earlier run's results in the output dir (exactly the files it "
                                     "recorded are deleted first); refused by default.")
    allow_other_files: bool = _option(False, "Write into an output dir that holds other files and no run of this "
                                             "tool (refused by default); a file of theirs under a name the run "
                                             "writes is refused all the same.")

    def __post_init__(self) -> None:
        for name, kind in (("normalization", Normalization), ("map_size", MapSize), ("overlay_format", OverlayFormat)):
            value = getattr(self, name)
            try:
                object.__setattr__(self, name, kind(value))
            except ValueError:
                allowed = choices(kind)
                msg = f"{name} {value!r}: use {', '.join(allowed[:-1])} or {allowed[-1]}"
                raise InputError(msg) from None
        workers = self.write_workers if self.write_workers is not None else min(8, os.cpu_count() or 1)
        object.__setattr__(self, "write_workers", max(1, workers))
        problem = (fixed_range_problem(self.normalization.value, self.vmin, self.vmax)
                   or overlay_problem(self.overlay_alpha, self.overlay_format.value))
        if problem:
            raise InputError(problem)
        check_thresholds(threshold=self.threshold, pixel_threshold=self.pixel_threshold,
                         uncertain_below=self.uncertain_below)
        if self.with_levels:
            known_colormap(self.colormap)  # an unknown name: one line now, not after the model loaded

    @property
    def with_levels(self) -> bool:
        """Whether any file shows the map through the colormap (the 8-bit levels are needed)."""
        return self.save_as_image or self.save_overlay

    def configured(self, **changes: object) -> WriterOptions:
        """These options with ``changes``, checked again."""
        return replace(self, **changes)

    def normalization_text(self) -> str:
        if self.normalization is Normalization.fixed:
            return f"fixed {self.vmin:g} {self.vmax:g}"
        return self.normalization.value

    def outputs_text(self) -> str:
        """The files each image gets, in words, for the summary."""
        kinds = [("npy", self.save_as_npy), (f"png ({self.colormap})", self.save_as_image),
                 (f"overlay ({self.overlay_format.value}, alpha {self.overlay_alpha:g})", self.save_overlay),
                 ("mask", self.save_mask)]
        return ", ".join(name for name, on in kinds if on) or "summary only"


def known_colormap(name: str) -> object:
    """The matplotlib colormap ``name``; an unknown name is an :class:`InputError` naming it."""
    import matplotlib as mpl  # imported lazily: only runs that write PNGs pay for it

    try:
        return mpl.colormaps[name]
    except KeyError:
        msg = f"unknown colormap {name!r}; use a matplotlib colormap name such as jet, viridis, inferno"
        raise InputError(msg) from None


# The writer also takes output_dir, outside the options: the datamodule owns the output dir (a per-folder
# override sets input and output together); the writer's only names it again, as saved configs do.
OUTPUT_DIR_DOC = ("Must be null or the datamodule's output_dir: the output dir is set on the data "
                  "(data.init_args.output_dir).")


def option_docs() -> dict[str, str]:
    """Each writer option's documentation, the one source of its help text."""
    return {option.name: option.metadata["doc"] for option in fields(WriterOptions)}


def option_defaults() -> dict[str, object]:
    return {option.name: getattr(option.default, "value", option.default)
            for option in fields(WriterOptions) if option.default is not MISSING}


def args_doc() -> str:
    """A Google-style ``Args:`` section of every option (the writer's docstring ends with it)."""
    lines = ["    Args:"]
    lines += [f"        {name}: {doc}" for name, doc in option_docs().items()]
    return "\n".join(lines) + "\n"


def check_counts(**values: tuple[int | None, int]) -> None:
    """Each ``name=(value, low)`` a whole number of at least ``low`` (``None``: unset); else a
    :class:`FolderInputError` naming it.

    Example:
        >>> check_counts(batch_size=(8, 1), num_workers=(None, 0))
        >>> check_counts(batch_size=(True, 1))
        Traceback (most recent call last):
        ...
        anomalib_folder_ext.errors.FolderInputError: batch_size True: must be a whole number of at least 1
    """
    for name, (value, low) in values.items():
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < low):
            raise FolderInputError(f"{name} {value!r}: must be a whole number of at least {low}", option=name)


def check_thresholds(**values: float | None) -> None:
    """Each threshold given a finite number (``None``: not given); else a :class:`CalibrationError` naming it.

    Example:
        >>> check_thresholds(threshold=0.3, pixel_threshold=None)
        >>> check_thresholds(threshold=float("nan"))
        Traceback (most recent call last):
        ...
        anomalib_folder_ext.errors.CalibrationError: threshold nan: must be a finite number in the model's raw units
    """
    for name, value in values.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)):
            raise CalibrationError(f"{name} {value!r}: must be a finite number in the model's raw units", option=name)


def fixed_range_problem(normalization: str, vmin: float | None, vmax: float | None) -> str | None:
    """Why ``vmin`` / ``vmax`` cannot be used with ``normalization``; ``None`` when they can.

    Example:
        >>> fixed_range_problem("fixed", 0.0, float("inf"))
        'normalization fixed needs finite vmin < vmax (got vmin 0.0, vmax inf)'
        >>> fixed_range_problem("per_image", 0.0, 1.0)
        'vmin and vmax apply only to normalization fixed (this run: per_image); leave them out or set normalization fixed'
    """
    if normalization != "fixed":
        if vmin is None and vmax is None:
            return None
        return (f"vmin and vmax apply only to normalization fixed (this run: {normalization}); "
                "leave them out or set normalization fixed")
    if vmin is None or vmax is None or not (math.isfinite(vmin) and math.isfinite(vmax) and vmax > vmin):
        return f"normalization fixed needs finite vmin < vmax (got vmin {vmin}, vmax {vmax})"
    return None


def overlay_problem(alpha: float, overlay_format: str) -> str | None:
    """Why the overlay options cannot be used; ``None`` when they can (NaN is not in [0, 1]). The
    format is a checked choice by then; the message names it for context."""
    if not 0.0 <= alpha <= 1.0:
        return f"overlay_alpha must be in [0, 1] and overlay_format jpg or png (got {alpha}, {overlay_format!r})"
    return None


@dataclass(frozen=True)
class WatchOptions:
    """How a watched folder is read and where each result goes as it lands (``anomalib-folder watch``).

    Example:
        >>> WatchOptions(rotate="hourly").rotate, WatchOptions(rotate="500").rotate
        ('hourly', '500')
        >>> WatchOptions(rotate="weekly")
        Traceback (most recent call last):
        ...
        anomalib_folder_ext.errors.InputError: rotate 'weekly': use hourly, daily or a number of images
    """

    max_wait_ms: int = _option(0, "The longest an image that is ready waits for more to fill a batch. 0: a batch "
                                  "is what is ready when the model is free, so one part at a time is answered at "
                                  "the model's own latency and a burst fills whole batches; a few ms groups the "
                                  "images of cameras triggered together (on a GPU a batch costs about one image).")
    poll: float | None = _option(None, "Look for new files every this many seconds instead of file events "
                                       "(network shares, where inotify sees nothing); null: file events.")
    settle_ms: int = _option(500, "Polling, and files already there at the start: a file is complete once its size "
                                  "and modification time stay the same this long.")
    complete_timeout_s: float = _option(60.0, "A file still being written after this long gets a failed row; it is "
                                              "predicted when it completes.")
    summary_every: float = _option(60.0, "Seconds between refreshes of results_summary.txt, defective.csv and the "
                                         "report while watching (results.csv grows row by row); also at the end.")
    rotate: str | None = _option(None, "hourly, daily, or a number of images: a new output sub-dir "
                                       "(<output_dir>/<date>_<hour>, <date>, part_0001, ...) for each period.")
    sort_into: str | None = _option(None, "Also put each input into <sort_into>/ok, defect, uncertain, failed (or "
                                          "undecided): a hard link (a copy across file systems).")
    sort_move: bool = _option(False, "With sort_into: move each input there instead of linking it.")
    post: str | None = _option(None, "Also POST each result as one JSON object to this http(s) URL (retried in "
                                     "the background; an endpoint that is down is reported, never fatal).")

    def __post_init__(self) -> None:
        check_counts(max_wait_ms=(self.max_wait_ms, 0), settle_ms=(self.settle_ms, 0))
        for name in ("poll", "complete_timeout_s", "summary_every"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value) or value <= 0):
                raise InputError(f"{name} {value!r}: must be a number of seconds above 0", option=name)
        if self.rotate is not None:
            rotate = str(self.rotate).strip().lower()
            if rotate not in {"hourly", "daily"} and not (rotate.isdigit() and int(rotate) > 0):
                raise InputError(f"rotate {self.rotate!r}: use hourly, daily or a number of images", option="rotate")
            object.__setattr__(self, "rotate", rotate)
        if self.post is not None:
            check_post_url(self.post)
        if self.sort_move and not self.sort_into:
            raise InputError("sort_move needs sort_into: the folder to move each input into", option="sort_move")


def watch_docs() -> dict[str, str]:
    """Each watch option's documentation, the one source of its help text."""
    return {option.name: option.metadata["doc"] for option in fields(WatchOptions)}


def watch_defaults() -> dict[str, object]:
    return {option.name: option.default for option in fields(WatchOptions)}


def check_post_url(url: str) -> None:
    """An http(s) URL with a host, else an :class:`InputError` naming it (before the model loads).

    Example:
        >>> check_post_url("http://127.0.0.1:8080/parts")
        >>> check_post_url("localhost:8080")
        Traceback (most recent call last):
        ...
        anomalib_folder_ext.errors.InputError: post 'localhost:8080': give an http:// or https:// URL with a host
    """
    import urllib.parse

    try:
        parts = urllib.parse.urlsplit(url)
        port_ok = parts.port is None or parts.port > 0
    except ValueError as exc:
        raise InputError(f"post {url!r}: not a URL ({exc})", option="post") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        raise InputError(f"post {url!r}: give an http:// or https:// URL with a host", option="post")
