"""The folder ``export --out`` writes: predict's output-dir rules, for an export.

An export writes into a new or empty folder, or into one that holds an earlier export of this tool
and nothing else: an ``export.json`` that is a regular file written by the tool, beside the export's
own file names. Any other file, or a link under one of the export's names, is refused in one line
before anything is converted. Every file lands through :class:`~anomalib_folder_ext.outputs.owned.OwnedDir`
(atomic, never through a link), and the earlier export's graph goes with it, so an ``export.json``
never sits beside a graph it does not describe.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

from anomalib_folder_ext.errors import OutputDirError
from anomalib_folder_ext.models.exported import METADATA_NAME, TOOL
from anomalib_folder_ext.outputs.outputdir import open_folder, shared_location
from anomalib_folder_ext.outputs.owned import OwnedDir, temporary_name

GRAPH_FILES = ("model.xml", "model.bin", "model.onnx")
EXPORT_FILES = (*GRAPH_FILES, METADATA_NAME)
_OURS = {*EXPORT_FILES, *(temporary_name(name) for name in EXPORT_FILES)}


def check_export_dir(out: Path) -> None:
    """Refuse ``out`` unless it is new, empty, or an earlier export of this tool and nothing else."""
    shared = shared_location(out)
    if shared:
        msg = f"--out {out}: is {shared}; an export goes into a folder of its own, such as model_export: choose one"
        raise OutputDirError(msg)
    directory = open_folder(out, "--out")
    if directory is None:
        return
    with directory:
        entries = directory.names()
        for name in sorted(_OURS & set(entries)):
            if directory.is_link(name):
                msg = (f"{out / name}: is a symbolic link; an export writes only inside --out and never through a "
                       "link: remove the link or choose another --out")
                raise OutputDirError(msg)
        if not entries:
            return
        if not _is_our_record(directory):
            shown = ", ".join(entries[:3]) + (", ..." if len(entries) > 3 else "")
            msg = (f"--out {out}: holds files that are not an export of this tool ({shown}), so nothing there is "
                   "replaced; choose a new or empty folder")
            raise OutputDirError(msg)
        others = [name for name in entries if name not in _OURS]
        if others:
            msg = (f"--out {out}: holds an earlier export and other files ({', '.join(others[:3])}), which an export "
                   "never replaces; move them away or choose a new or empty folder")
            raise OutputDirError(msg)


def _is_our_record(directory: OwnedDir) -> bool:
    found = directory.lstat(METADATA_NAME)
    if found is None or not stat.S_ISREG(found.st_mode):
        return False
    try:
        record = json.loads(directory.read_text(METADATA_NAME))
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and record.get("tool") == TOOL


def write_export(out: Path, files: dict[str, Path], metadata: dict) -> None:
    """Put an export's files into ``out`` (checked by :func:`check_export_dir`): first a record saying the
    export is not complete, then the graph, then the full ``export.json``; the earlier export's other
    files are removed. A run killed midway leaves a folder the next export takes back, and that predict
    refuses as incomplete."""
    with OwnedDir(out, create=True) as directory:
        directory.write(METADATA_NAME, _json({"tool": TOOL, "complete": False}))
        for name in GRAPH_FILES:
            if name not in files:
                directory.remove(name)
        for name, source in files.items():
            directory.write(name, source.read_bytes())
        directory.write(METADATA_NAME, _json(metadata))


def _json(data: dict) -> bytes:
    return (json.dumps(data, indent=2) + "\n").encode()
