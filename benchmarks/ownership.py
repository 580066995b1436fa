"""What owning its files costs a run: resume's checks per 10,000 images, the checkpoint's hash, and
the write path (``OwnedDir.write``) against the plain atomic write it replaced.

    .venv/bin/python benchmarks/ownership.py                  # 10,000 images: about a minute on 2 cores
    .venv/bin/python benchmarks/ownership.py --images 1000    # a smoke run

1. Resume's checks, on an output dir as a finished 10,000-image run leaves it (journal rows with
   their input's size and modification time, an NPY and a PNG per image, results.csv, the finished
   record; the files are small: the checks stat them, they do not read them), each timed in this
   process, best of ``--repeats``:

   - ``check_output_dir``: the refusals before a run (links among the names it writes, someone
     else's files under them), with every output name;
   - ``read_journal`` + ``reusable_rows``: every row parsed and verified (its names, its files in
     place, its input's size and modification time);
   - ``finished_run``: what ``batches`` does to skip a finished folder (the above, plus results.csv);
   - ``remove_temporaries``: a killed run's temporaries deleted by their exact names (one attempt
     per name the run can write).
2. The checkpoint's SHA-256 (``checkpoint.content_digest``) of a ``--checkpoint_mb`` file: once, and
   again from the per-process cache.
3. Writes: ``--writes`` files of 256 KiB (a 256x256 float32 NPY) written by ``OwnedDir.write`` and
   by the atomic write it replaced (``mkstemp`` + ``fchmod`` + rename, no link checks), alternating
   rounds in one process, best of ``--repeats``: the price of never writing through a link.

Everything goes into one temp dir under /tmp, deleted at the end. Benchmarks are not tests:
nothing here asserts.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from common import print_table

from anomalib_folder_ext.outputs import journal, outputdir
from anomalib_folder_ext.models.checkpoint import content_digest
from anomalib_folder_ext.outputs.owned import OwnedDir
from anomalib_folder_ext.outputs.runplan import OutputNames
from anomalib_folder_ext.outputs.summary import CSV_NAME, ImageResult, csv_text


def best(repeats: int, action: Callable[[], object]) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return min(times)


def finished_dir(work: Path, count: int) -> tuple[OwnedDir, Path, OutputNames, dict]:
    """An output dir as a finished run of ``count`` images leaves it, and its input folder."""
    folder, out = work / "in", work / "out"
    folder.mkdir()
    names = [f"img{index:05d}.png" for index in range(count)]
    for name in names:
        (folder / name).write_bytes(b"p" * 64)
    plan = OutputNames.for_images(names)
    directory = OwnedDir(out, create=True)
    journal.write_owner(directory)
    rows = []
    for name in names:
        files = plan.files(name)
        for kind in ("npy", "png"):
            (out / files[kind]).write_bytes(b"m" * 16)
        rows.append(ImageResult(name, npy=files["npy"], png=files["png"], score=1.0, source=journal.file_stamp(folder / name)))
    settings = {"checkpoint": "0" * 64, "precision": "32-true"}
    log = journal.Journal(directory, 0, settings)
    log.append(rows)
    log.close()
    directory.write(CSV_NAME, csv_text(rows).encode())
    journal.write_finished(directory, {"settings": settings, "images": journal.names_digest(names)})
    return directory, folder, plan, settings


def plain_atomic_write(path: Path, data: bytes) -> None:
    """The write this project used before OwnedDir: mkstemp beside the file, fchmod, rename."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, 0o644)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(name, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=10000)
    parser.add_argument("--writes", type=int, default=2000)
    parser.add_argument("--checkpoint_mb", type=int, default=32, help="32: about an EfficientAd-S checkpoint")
    parser.add_argument("--repeats", type=int, default=3)
    options = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ownership_bench_"))
    try:
        directory, folder, plan, settings = finished_dir(work, options.images)
        out = directory.path
        rows = [
            ["check_output_dir (every output name)",
             best(options.repeats, lambda: outputdir.check_output_dir(out, folder, plan, reuse=True))],
            ["read_journal + reusable_rows",
             best(options.repeats, lambda: journal.reusable_rows(journal.read_journal(directory), directory, plan, folder))],
            ["finished_run (skip a finished folder)",
             best(options.repeats, lambda: journal.finished_run(directory, settings, plan, folder))],
            ["remove_temporaries (exact names)", best(options.repeats, lambda: outputdir.remove_temporaries(directory, plan))],
        ]
        assert journal.finished_run(directory, settings, plan, folder) is not None  # the checks did find it finished
        print(f"\nResume's checks on a finished run of {options.images:,} images (NPY + PNG), best of {options.repeats}")
        print_table(["check", "s", "µs per image"],
                    [[name, f"{seconds:.3f}", f"{seconds / options.images * 1e6:.1f}"] for name, seconds in rows])

        checkpoint = work / "model.ckpt"
        checkpoint.write_bytes(os.urandom(options.checkpoint_mb << 20))
        first = best(1, lambda: content_digest(checkpoint))
        cached = best(options.repeats, lambda: content_digest(checkpoint))
        print(f"\nThe checkpoint's SHA-256 ({options.checkpoint_mb} MiB)")
        print_table(["", "ms"], [["first time in a process", f"{first * 1000:.1f}"],
                                 ["again (cached by path, size, modification time)", f"{cached * 1000:.3f}"]])

        data = os.urandom(256 << 10)
        target = OwnedDir(work / "writes", create=True)
        plain_dir = work / "plain"
        plain_dir.mkdir()
        owned_s, plain_s = [], []
        for _ in range(options.repeats):
            for kind in ("owned", "plain"):
                started = time.perf_counter()
                for index in range(options.writes):
                    if kind == "owned":
                        target.write(f"img{index:05d}_anomaly.npy", data)
                    else:
                        plain_atomic_write(plain_dir / f"img{index:05d}_anomaly.npy", data)
                (owned_s if kind == "owned" else plain_s).append(time.perf_counter() - started)
        print(f"\nWriting {options.writes:,} files of 256 KiB, alternating rounds, best of {options.repeats}")
        print_table(["write", "s", "µs per file", "vs plain"],
                    [["OwnedDir.write (no link followed)", f"{min(owned_s):.3f}",
                      f"{min(owned_s) / options.writes * 1e6:.0f}", f"{min(owned_s) / min(plain_s):.2f}"],
                     ["plain atomic write (before)", f"{min(plain_s):.3f}",
                      f"{min(plain_s) / options.writes * 1e6:.0f}", "1.00"]])
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
