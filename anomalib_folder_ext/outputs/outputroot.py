"""The output root of a multi-folder run: its combined files and the record of what they cover.

The root holds each folder's output dir (by default), ``all_batches.csv``,
``all_batches_summary.txt``, ``index.html`` (when the folders have reports) and
``all_batches.json``: which folders the combined files cover. A run of some folders (``--only``)
adds them to that record, so the combined files keep the folders earlier runs finished.

The combined files' names are this tool's only where ``all_batches.json`` says so (or, from
before that record, where ``all_batches.csv`` has exactly this tool's header); a file of someone
else's under one of them is refused, never replaced, and so is a link.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from anomalib_folder_ext.outputs import journal, summary
from anomalib_folder_ext.images.discover import RUN_RECORD_NAMES, natural_key
from anomalib_folder_ext.errors import InputError, OutputDirError
from anomalib_folder_ext.outputs.owned import DirView, OwnedDir, open_existing

ROOT_RECORD = RUN_RECORD_NAMES[1]  # all_batches.json
INDEX_HTML = "index.html"
ROOT_FILES = (summary.ALL_CSV_NAME, summary.ALL_SUMMARY_NAME, INDEX_HTML)


@dataclass(frozen=True)
class FolderOutput:
    """Where one folder of the run reads and writes, and where that was set (for messages)."""

    name: str
    origin: str
    folder: Path
    output_dir: Path


def check_output_root(output_root: Path) -> None:
    """Refuse an output root whose combined-file names are taken by someone else's files or links."""
    if Path(os.path.realpath(output_root)) == Path("/"):
        msg = f"--output_root {output_root}: is the root of the file system; choose a folder of its own"
        raise OutputDirError(msg)
    directory = open_existing(output_root)
    if directory is None:
        return
    with directory:
        for name in (ROOT_RECORD, *ROOT_FILES):
            if directory.is_link(name):
                msg = (f"{output_root / name}: is a symbolic link; a run never writes through a link: remove it or "
                       "choose another --output_root")
                raise OutputDirError(msg)
        if _read_record(directory) is not None or _legacy_combined_csv(directory):
            return
        taken = [name for name in (ROOT_RECORD, *ROOT_FILES) if directory.lstat(name) is not None]
        if taken:
            msg = (f"{output_root / taken[0]}: is not from a run of this tool (no {ROOT_RECORD} record), so it is not "
                   "replaced: move it away or choose another --output_root")
            raise OutputDirError(msg)


def check_folder_outputs(outputs: Sequence[FolderOutput], output_root: Path) -> None:
    """Each folder its own output dir: not another folder's, not the output root, not another's input."""
    root = output_root.resolve()
    owners: dict[Path, str] = {}
    inputs = {output.folder.resolve(): output.name for output in outputs}
    for output in outputs:
        key = output.output_dir.resolve()
        if key in owners:
            problem = f"is also {owners[key]}'s; each folder needs its own"
        elif key == root:
            problem = "is the output root, where the combined files go; give each folder an output dir of its own"
        elif key in inputs and key != output.folder.resolve():  # its own input folder: check_output_dir says why
            problem = f"is the input folder of {inputs[key]}; its maps would be read as images: choose another output_dir"
        else:
            owners[key] = output.name
            continue
        msg = f"{output.origin}: output_dir {output.output_dir} {problem}"
        raise InputError(msg)


def _read_record(directory: DirView) -> dict | None:
    try:
        record = json.loads(directory.read_text(ROOT_RECORD))
    except (OSError, ValueError):
        return None
    if not (isinstance(record, dict) and record.get("tool") == journal.TOOL and isinstance(record.get("folders"), list)):
        return None
    record["folders"] = [entry for entry in record["folders"] if isinstance(entry, dict)
                         and isinstance(entry.get("name"), str) and isinstance(entry.get("output_dir"), str)]
    return record


def _legacy_combined_csv(directory: DirView) -> bool:
    try:
        first = directory.read_text(summary.ALL_CSV_NAME).split("\n", 1)[0]
    except OSError:
        return False
    return first == ",".join(("batch", *summary.CSV_COLUMNS))


class OutputRoot:
    """The output root, opened once; ``all_batches.json`` names this run's folders from the start."""

    def __init__(self, path: Path, outputs: Sequence[FolderOutput], write: bool) -> None:
        self.path = path
        self.directory = OwnedDir(path, create=True)
        self.entries = [{"name": output.name, "output_dir": self.shown(output.output_dir), "origin": output.origin}
                        for output in outputs]
        mine = {entry["output_dir"] for entry in self.entries}
        record = _read_record(self.directory) or {"folders": []}
        self.earlier_entries = [entry for entry in record["folders"] if entry["output_dir"] not in mine]
        if write:
            self.write_record()

    def shown(self, output_dir: Path) -> str:
        """An output dir as the combined files name it: relative to the root where it can be."""
        return os.path.relpath(output_dir.resolve(), self.path.resolve())

    def write_record(self) -> None:
        entries = sorted([*self.earlier_entries, *self.entries],
                         key=lambda entry: (natural_key(entry["name"]), entry["output_dir"]))
        record = {"tool": journal.TOOL, "updated": time.strftime("%Y-%m-%d %H:%M:%S"), "folders": entries}
        self.directory.write(ROOT_RECORD, (json.dumps(record, indent=1) + "\n").encode())

    def earlier_reports(self) -> list[summary.BatchReport]:
        """Folders an earlier run into this root finished and this run did not touch, from their files."""
        reports = []
        for entry in self.earlier_entries:
            out = self.path / entry["output_dir"]
            record = journal.read_finished(out)
            if record is None:
                continue  # gone, or never finished: nothing to show of it
            try:
                rows = [summary.row_from_csv(values) for values in summary.read_results(out)]
            except (OSError, ValueError, InputError):
                continue
            reports.append(summary.BatchReport(entry["name"], self.shown(out), rows, "done earlier",
                                               record.get("predicted", 0), record.get("loop_s", 0.0)))
        return reports

    def thresholds_in_force(self, reports: Sequence[summary.BatchReport]) -> dict[str, str]:
        """The thresholds that decided the folders, as their finished records say: once when all share them."""
        from anomalib_folder_ext.decision.rule import Thresholds

        found = {json.dumps((journal.read_finished(self.path / report.output_dir) or {}).get("thresholds"), sort_keys=True)
                 for report in reports}
        if len(found) != 1 or found == {"null"}:
            return {"thresholds": "per folder: see each folder's results_summary.txt"} if len(found) > 1 else {}
        return Thresholds(**json.loads(found.pop())).parameters()

    def write_combined(self, reports: Sequence[summary.BatchReport], parameters: dict[str, object]) -> str:
        """``all_batches.csv``, ``all_batches_summary.txt``, the record, and ``index.html`` when a folder has
        a report; what the last line says of them."""
        from anomalib_folder_ext.outputs.report import REPORT_HTML, index_html

        parameters = {**parameters, **self.thresholds_in_force(reports)}
        self.directory.write(summary.ALL_CSV_NAME, summary.combined_csv_text(reports).encode())
        self.directory.write(summary.ALL_SUMMARY_NAME, summary.combined_summary_text(parameters, reports).encode())
        self.write_record()
        written = f"{summary.ALL_CSV_NAME} (one row per image), {summary.ALL_SUMMARY_NAME}"
        if any((self.path / report.output_dir / REPORT_HTML).is_file() for report in reports):
            self.directory.write(INDEX_HTML, index_html(reports).encode())
            written += f", {INDEX_HTML} (every folder's report)"
        return written
