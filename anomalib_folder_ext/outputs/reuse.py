"""What resume may keep of an earlier run in an output dir, and whether a folder is finished as it is.

Resume trusts nothing it reads: the settings (the checkpoint's content among them) must match; a row
is reused only when it names exactly the files this run would write, those files are in place, and
its image still has the stamp recorded in the journal (:mod:`~anomalib_folder_ext.outputs.journal`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from anomalib_folder_ext.outputs.artifacts import display_name
from anomalib_folder_ext.outputs.journal import JournalState, file_stamp, names_digest, read_finished, read_journal
from anomalib_folder_ext.outputs.owned import OwnedDir
from anomalib_folder_ext.outputs.runplan import FILE_KINDS, OutputNames
from anomalib_folder_ext.outputs.summary import CSV_NAME, ImageResult, parse_results


@dataclass
class Reuse:
    """What resume may keep of an earlier run, and what it will not trust (said in one line)."""

    rows: dict[str, ImageResult] = field(default_factory=dict)  # image -> a trusted row (ok or failed)
    changed: list[str] = field(default_factory=list)  # images replaced since their row was written
    untrusted: list[str] = field(default_factory=list)  # "image: reason" for rows that are not this run's

    @property
    def complete(self) -> dict[str, ImageResult]:
        """The rows that need no redoing: ``ok`` ones (an image that failed is tried again)."""
        return {name: row for name, row in self.rows.items() if row.status == "ok"}

    def summary_line(self) -> str | None:
        """One line for the user when earlier rows are not reused; ``None`` when all were."""
        parts = []
        if self.changed:
            parts.append(f"{len(self.changed)} changed since (size or modification time; first: {display_name(self.changed[0])})")
        if self.untrusted:
            parts.append(f"{len(self.untrusted)} not written by this tool for this folder (first: {self.untrusted[0]})")
        if not parts:
            return None
        return f"resume: earlier rows not reused: {'; '.join(parts)}; those images are predicted again"


def reusable_rows(state: JournalState, directory: OwnedDir, plan: OutputNames, folder: Path,
                  keep_gone: bool = False) -> Reuse:
    """The earlier rows this run can keep as they are; see the module doc. ``keep_gone``: a row whose image
    is no longer in the folder stands (a watch: parts are moved on after inspection)."""
    reuse = Reuse(untrusted=list(state.foreign))
    wanted = set(plan.names)
    for name, row in state.rows.items():
        if name not in wanted:
            continue  # an image no longer in the folder: its row simply is not part of this run
        problem = _row_problem(row, directory, plan)
        if problem:
            reuse.untrusted.append(f"{display_name(name)}: {problem}")
        elif row.source != (stamp := file_stamp(folder / name)) and not (keep_gone and stamp is None):
            reuse.changed.append(name)
        else:
            reuse.rows[name] = row
    return reuse


def _row_problem(row: ImageResult, directory: OwnedDir, plan: OutputNames) -> str | None:
    if row.status not in {"ok", "failed"}:
        return f"status {row.status!r}"
    if row.source is None and row.status == "ok":
        return "no record of the input file (a journal of an older version)"
    expected = plan.files(row.image) if row.status == "ok" else dict.fromkeys(FILE_KINDS, "")
    for kind in FILE_KINDS:
        named = getattr(row, kind)
        if named != expected[kind]:
            return f"its {kind} names {named!r}, not this run's {expected[kind]!r}"
        if named and not directory.is_file(named):
            return f"its {kind} file {named} is missing (or not a plain file)"
    return None


def finished_run(directory: OwnedDir, settings: Mapping[str, object], plan: OutputNames, folder: Path) -> dict | None:
    """The finished record when the dir holds a complete run of exactly these images with these
    settings, every row trusted, every image unchanged; else ``None`` (the folder needs a run)."""
    record = read_finished(directory)
    if record is None or record.get("settings") != dict(settings) or record.get("images") != names_digest(plan.names):
        return None
    try:
        rows = parse_results(directory.read_text(CSV_NAME))
    except (OSError, ValueError):
        return None
    if [row.get("image") for row in rows] != [display_name(name) for name in plan.names]:
        return None
    reuse = reusable_rows(read_journal(directory), directory, plan, folder)
    if len(reuse.rows) != len(plan.names) or reuse.untrusted:
        return None
    return record
