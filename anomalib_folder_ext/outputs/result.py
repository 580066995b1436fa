"""What a finished run holds, read back from its files: the result a Python caller gets.

Made from ``results.csv`` and the finished record (``.journal/finished.json``) alone, so a result is
the same whether the run just ended in this process, ran on several ranks, or finished last week.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from anomalib_folder_ext.outputs import journal, summary
from anomalib_folder_ext.outputs.summary import ImageResult


@dataclass(frozen=True)
class FolderResult:
    """One folder's results: every image's row (``results.csv``), the counts and the timing.

    Example:
        >>> result = FolderResult(Path("out"), (ImageResult("a.png", score=2.0, pred_label=True, decision="defect"),
        ...                                      ImageResult("b.png", status="failed", error="truncated")))
        >>> result.images, result.ok, result.above_threshold, [row.image for row in result.failed]
        (2, 1, 1, ['b.png'])
        >>> [row.image for row in result.defective]
        ['a.png']
        >>> result.results_csv.as_posix(), result.top(1)[0].image
        ('out/results.csv', 'a.png')
    """

    output_dir: Path
    rows: tuple[ImageResult, ...]
    predicted: int = 0  # images this run predicted; the rest came from an earlier run (resume)
    loop_s: float = 0.0  # first batch to last file written, the slowest rank
    startup_s: float | None = None  # process start to first batch, rank 0
    status: str = "ran"  # batch folders: ran, resumed, or done earlier

    @classmethod
    def read(cls, output_dir: str | Path, status: str = "ran") -> FolderResult:
        """The results a run left in ``output_dir`` (its ``results.csv`` and finished record)."""
        output_dir = Path(output_dir)
        rows = tuple(summary.row_from_csv(values) for values in summary.read_results(output_dir))
        record = journal.read_finished(output_dir) or {}
        return cls(output_dir, rows, int(record.get("predicted", 0)), float(record.get("loop_s", 0.0)),
                   record.get("startup_s"), status)

    @property
    def images(self) -> int:
        return len(self.rows)

    @property
    def ok(self) -> int:
        return sum(row.status == "ok" for row in self.rows)

    @property
    def failed(self) -> list[ImageResult]:
        """The images that could not be predicted; each row's ``error`` says why."""
        return [row for row in self.rows if row.status != "ok"]

    @property
    def above_threshold(self) -> int:
        """Images at or above the image threshold in force (``pred_label`` true, decided ``defect``)."""
        return sum(row.pred_label is True for row in self.rows)

    @property
    def defective(self) -> list[ImageResult]:
        """The parts decided ``defect``, then ``uncertain``, each highest score first: ``defective.csv``'s rows."""
        return summary.defective_rows(self.rows)

    @property
    def defective_csv(self) -> Path:
        return self.output_dir / summary.DEFECTIVE_NAME

    @property
    def images_per_s(self) -> float:
        return self.predicted / self.loop_s if self.loop_s > 0 else 0.0

    @property
    def results_csv(self) -> Path:
        return self.output_dir / summary.CSV_NAME

    @property
    def summary(self) -> Path:
        return self.output_dir / summary.SUMMARY_NAME

    def top(self, count: int = 10) -> list[ImageResult]:
        """The ``count`` most anomalous images (highest raw score first)."""
        return summary.most_anomalous(self.rows, count)


@dataclass(frozen=True)
class BatchesResult:
    """Every batch folder's result, in the order they ran, and the combined files of the output root."""

    output_root: Path
    folders: dict[str, FolderResult]  # batch folder name -> its result

    @property
    def rows(self) -> list[ImageResult]:
        return [row for folder in self.folders.values() for row in folder.rows]

    @property
    def images(self) -> int:
        return sum(folder.images for folder in self.folders.values())

    @property
    def failed(self) -> list[tuple[str, ImageResult]]:
        """(batch folder, row) of every image that could not be predicted."""
        return [(name, row) for name, folder in self.folders.items() for row in folder.failed]

    @property
    def all_batches_csv(self) -> Path:
        return self.output_root / summary.ALL_CSV_NAME

    @property
    def all_batches_summary(self) -> Path:
        return self.output_root / summary.ALL_SUMMARY_NAME


@dataclass(frozen=True)
class WatchResult:
    """A watch's results once it stopped: one output dir, or one per rotation period, and why it stopped."""

    output_dir: Path  # the output dir, or the root holding the periods' dirs (rotate)
    periods: tuple[FolderResult, ...]  # each output dir this watch wrote into, in order
    stopped: str = ""  # what ended it: Ctrl-C, SIGTERM, the folder removed, stop()

    @property
    def rows(self) -> list[ImageResult]:
        return [row for period in self.periods for row in period.rows]

    @property
    def images(self) -> int:
        return sum(period.images for period in self.periods)

    @property
    def predicted(self) -> int:
        return sum(period.predicted for period in self.periods)

    @property
    def failed(self) -> list[ImageResult]:
        return [row for period in self.periods for row in period.failed]
