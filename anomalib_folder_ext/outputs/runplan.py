"""The run plan: the files a run will write and what it reuses, decided before anything loads.

The preflight (before the model loads), the writer, resume and the multi-folder loop all ask
:class:`OutputNames` which files an image gets, so an output that would land on an input image is
found with every enabled file kind, and a journal row is trusted only when it names exactly the
files this run would have written.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from anomalib_folder_ext.options import WriterOptions
from anomalib_folder_ext.outputs.artifacts import NPY_SUFFIX, PNG_SUFFIX, display_name, output_stems

FILE_KINDS = ("npy", "png", "overlay", "mask")  # the results.csv columns that name a file
MASK_SUFFIX = "_mask.png"
# Every suffix a map of this tool can have, whatever a run's options: what overwrite may delete.
MAP_SUFFIXES = (NPY_SUFFIX, PNG_SUFFIX, "_overlay.jpg", "_overlay.png", MASK_SUFFIX)


def overlay_suffix(overlay_format: str) -> str:
    return f"_overlay.{overlay_format}"


@dataclass
class OutputNames:
    """Each image's output files, relative to the output dir, for the enabled file kinds.

    Example:
        >>> plan = OutputNames.for_images(["a.png", "a.jpg", "sub/b.bmp"], npy=True, png=False)
        >>> plan.files("sub/b.bmp")
        {'npy': 'sub/b_anomaly.npy', 'png': '', 'overlay': '', 'mask': ''}
        >>> sorted(plan.folders())
        ['sub']
    """

    names: list[str]
    suffixes: dict[str, str]  # file kind -> suffix, enabled kinds only
    stems: dict[str, PurePosixPath] = field(default_factory=dict)
    _taken: set[str] | None = field(default=None, repr=False, compare=False)  # the stems, case-folded (add)

    @classmethod
    def for_images(
        cls, names: Sequence[str], npy: bool = True, png: bool = True, overlay: str | None = None, mask: bool = False
    ) -> OutputNames:
        """``overlay``: the overlay format (``jpg``/``png``) when overlays are written."""
        suffixes = {kind: suffix for kind, suffix, on in (("npy", NPY_SUFFIX, npy), ("png", PNG_SUFFIX, png),
                                                          ("overlay", overlay_suffix(overlay or "jpg"), bool(overlay)),
                                                          ("mask", MASK_SUFFIX, mask))
                    if on}
        names = list(names)
        return cls(names, suffixes, dict(zip(names, output_stems(names), strict=True)))

    @classmethod
    def for_options(cls, options: WriterOptions, names: Sequence[str]) -> OutputNames:
        """The files each image gets under the writer's ``options``.

        Example:
            >>> OutputNames.for_options(WriterOptions(save_as_image=False), ["a.png"]).files("a.png")["npy"]
            'a_anomaly.npy'
        """
        return cls.for_images(names, options.save_as_npy, options.save_as_image,
                              options.overlay_format.value if options.save_overlay else None, options.save_mask)

    @classmethod
    def for_stream(cls, options: WriterOptions, names: Sequence[str], known: Mapping[str, str]) -> OutputNames:
        """A watch's names: each stem given as it comes (a later image cannot rename an earlier one's files);
        ``known``: the stems earlier rows in the output dir name, kept as they are.

        Example:
            >>> plan = OutputNames.for_stream(WriterOptions(), ["a.jpg", "a.png"], {"a.jpg": "a"})
            >>> plan.add("b.png"); [str(plan.stems[name]) for name in plan.names]
            ['a', 'a_png', 'b']
        """
        plan = cls.for_options(options, [])
        plan.stems.update((name, PurePosixPath(stem)) for name, stem in known.items() if name in set(names))
        plan.names = [name for name in names if name in plan.stems]
        for name in names:
            plan.add(name)
        return plan

    def add(self, name: str) -> None:
        """Give an image that just arrived its stem: its own, unless an earlier image has it."""
        if name in self.stems:
            return
        if self._taken is None or len(self._taken) != len(self.stems):
            self._taken = {str(stem).casefold() for stem in self.stems.values()}
        taken = self._taken
        path = PurePosixPath(display_name(name))
        stem = path.with_suffix("")
        if str(stem).casefold() in taken:
            stem = stem.with_name(f"{stem.name}_{path.suffix.lstrip('.')}")
        candidate, counter = stem, 1
        while str(candidate).casefold() in taken:
            counter += 1
            candidate = stem.with_name(f"{stem.name}_{counter}")
        self.stems[name] = candidate
        taken.add(str(candidate).casefold())
        self.names.append(name)

    def files(self, name: str) -> dict[str, str]:
        """The file of each kind (``""`` when that kind is not written) for the image ``name``."""
        stem = self.stems[name]
        return {kind: f"{stem}{self.suffixes[kind]}" if kind in self.suffixes else "" for kind in FILE_KINDS}

    def all_files(self) -> Iterator[str]:
        for stem in self.stems.values():
            for suffix in self.suffixes.values():
                yield f"{stem}{suffix}"

    def folders(self) -> set[str]:
        """The sub-folders of the output dir that outputs go into (a recursive run mirrors its input)."""
        folders: set[str] = set()
        for stem in self.stems.values():
            folders.update(parent.as_posix() for parent in stem.parents if parent.as_posix() != ".")
        return folders


def stems_of_rows(rows: Iterable[object]) -> dict[str, str]:
    """image -> the output stem its row's files have (rows without a file have none).

    Example:
        >>> from types import SimpleNamespace as Row
        >>> stems_of_rows([Row(image="a.png", npy="a_png_anomaly.npy", png="", overlay="", mask="")])
        {'a.png': 'a_png'}
    """
    suffixes = sorted(MAP_SUFFIXES, key=len, reverse=True)
    stems = {}
    for row in rows:
        for kind in FILE_KINDS:
            named = getattr(row, kind, "") or ""
            suffix = next((suffix for suffix in suffixes if named.endswith(suffix)), None)
            if suffix:
                stems[row.image] = named[: -len(suffix)]
                break
    return stems


def run_settings(options: WriterOptions, checkpoint: str | Path | None, precision: str, backend: str | None = None,
                 thresholds: dict | None = None) -> dict:
    """What decides the files' content: an output dir resumes only under the same settings.

    The checkpoint counts by its content (SHA-256): new weights saved over the old file are
    another model, and a checkpoint moved elsewhere is the same one; an exported graph counts with
    its ``export.json`` (:func:`~anomalib_folder_ext.models.exported.model_identity`). ``backend``: the
    runtime of an exported model (``checkpoint`` is then its graph file). ``thresholds``: those given by
    option or calibration (the model's own belong to its identity); they and the masks count only when
    set, so an output dir of a run without them resumes as before.
    """
    from anomalib_folder_ext.models.exported import model_identity

    decision = {"thresholds": dict(thresholds)} if thresholds else {}
    return decision | ({"mask": True} if options.save_mask else {}) | {
        "checkpoint": model_identity(checkpoint) if checkpoint else None,
        "precision": f"{precision} on {backend}" if backend else str(precision),
        "npy": options.save_as_npy,
        "png": options.colormap if options.save_as_image else False,
        "overlay": f"{options.overlay_format.value} {options.overlay_alpha:g}" if options.save_overlay else False,
        "normalization": _normalization(options, thresholds or {}),
        "map_size": options.map_size.value,
    }


def _normalization(options: WriterOptions, thresholds: dict) -> str:
    """The maps' scale: ``model`` draws 0.5 at the pixel threshold in force, so a given one is part of it (a
    relabel changes the thresholds, never the maps: a resume under another pixel threshold would mix scales)."""
    text = options.normalization_text()
    return f"{text} at pixel_threshold {thresholds['pixel']!r}" if text == "model" and "pixel" in thresholds else text


@dataclass
class RunPlan:
    """One folder's run, decided before the model loads: its images, their output files, the
    settings that decide the files' content, and the rows an earlier run finished (resume).

    The writer makes it once (:mod:`~anomalib_folder_ext.outputs.rundir`) and tells the datamodule which
    images not to predict again (``FolderDataModule.skip_images``).

    Example:
        >>> plan = RunPlan(OutputNames.for_images(["a.png", "b.png"]), {}, earlier={"a.png": None})
        >>> plan.skip
        frozenset({'a.png'})
    """

    outputs: OutputNames
    settings: dict
    earlier: dict = field(default_factory=dict)  # image -> its summary.ImageResult from the earlier run

    @property
    def names(self) -> list[str]:
        return self.outputs.names

    @property
    def skip(self) -> frozenset[str]:
        return frozenset(self.earlier)
