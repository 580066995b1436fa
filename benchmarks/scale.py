"""Scale: memory stays flat with the folder's size, and listing a huge folder is quick.

    .venv/bin/python benchmarks/scale.py                       # the full table: about 2.5 min on 2 cores
    .venv/bin/python benchmarks/scale.py --sizes 100 1000 --discover 10000   # a smoke run
    .venv/bin/python benchmarks/scale.py --keep                # keep the temp dir (its path is printed)

1. Memory: a folder of 1,000 and one of 10,000 images (128x128 PNG: a few distinct textures,
   written once and hard-linked under every name) each run through the real pipeline, as a user
   starts it: ``anomalib predict --config configs/folder.yaml`` with an EfficientAd-S checkpoint
   made here offline (``demo.calibrated_checkpoint``), its network replaced by
   ``io_ceiling_model.TrivialMapEfficientAd`` (a trivial map: everything around the model, the
   datamodule, DataLoader workers, writer threads, summaries, runs for real; 10,000 images take
   about a minute on 2 cores). Images are resized to the checkpoint's own input size, as usual.
   While each run goes on, this process samples the whole process tree (the CLI and its
   DataLoader workers, from ``/proc/<pid>/task/*/children``) every ``--interval`` s:

   - main VmHWM: the CLI process's own high-water mark (exact, not sampled; the writer records
     the same number, ``host_mib`` in its finished record ``.journal/finished.json``, which its
     results_summary.txt words as "peak memory");
   - tree RSS: the largest sum of VmRSS over the tree in one sample (counts pages the processes
     share, such as torch's libraries in a forked worker, once per process: an upper bound);
   - tree USS: the largest sum of private memory (Private_Clean + Private_Dirty of
     ``/proc/<pid>/smaps_rollup``) in one sample: pages only the tree's processes hold, a lower
     bound. (Not PSS: it splits library pages with processes outside the tree too, so it swings
     with whatever else runs on the machine and its ratio measures the neighbours.)

   What the tree really holds lies between tree USS and tree RSS.

   The ratio of the largest folder to the smallest is the figure of merit (target <= 1.1x); the
   main process's RSS at 0/25/50/75/100 % of each predict loop (first batch to last file
   written, from the finished record's ``startup_s`` and ``loop_s``) shows any growth.
2. Discovery: ``--discover`` empty files with image names (plus 5 % other names: .txt, .json,
   hidden ``._*.png``) in one flat folder, then the same in 100 sub-folders, and
   ``discover.list_folder_images(folder)`` (``recursive=True`` for the nested layout) timed in this
   process, best of ``--repeats`` (target < 5 s for 100,000 files).

Everything goes into one temp dir under /tmp, deleted at the end unless ``--keep``; the bulk
outputs of each run (NPY, PNG) are deleted as soon as the run is measured. Benchmarks are not
tests: nothing here asserts.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from common import (
    REPO,
    Bench,
    finished_record,
    make_folder,
    print_table,
    subprocess_env,
)
from PIL import Image

from anomalib_folder_ext.callbacks import runinfo

TRIVIAL_MODEL = "io_ceiling_model.TrivialMapEfficientAd"
DISTINCT_IMAGES = 64
IMAGE_SIZE = 128


# -- memory ---------------------------------------------------------------------------------------
@dataclass
class TreeRun:
    """One CLI run: its wall time and what the sampler saw of its process tree."""

    images: int
    seconds: float = 0.0
    loop_s: float | None = None
    main_hwm_kb: int = 0
    tree_rss_kb: int = 0
    tree_uss_kb: int = 0
    child_hwm_kb: int = 0  # the largest high-water mark of any child (DataLoader worker)
    processes: int = 0  # the most processes seen at once
    samples: list[tuple[float, int]] = field(default_factory=list)  # (seconds since start, main VmRSS kB)
    recorded_peak: str = ""  # the run's own peak memory per rank, as its summary words it
    startup_s: float | None = None  # process start to first batch (the finished record)

    def main_rss_at(self, fraction: float) -> float:
        """The main process's VmRSS (MiB) at the last sample before ``fraction`` of the predict loop
        (first batch to last file written; of the wall time where the record lacks the times)."""
        if self.startup_s is not None and self.loop_s is not None:
            cutoff = self.startup_s + fraction * self.loop_s
        else:
            cutoff = fraction * self.seconds
        before = [rss for t, rss in self.samples if t <= cutoff] or [self.samples[0][1]]
        return before[-1] / 1024


def _status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (kB) of ``pid``; empty when it is gone."""
    values = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                values[line.split(":")[0]] = int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return {}
    return values


def _private_kb(pid: int) -> int:
    """Memory only ``pid`` maps (its USS): Private_Clean + Private_Dirty of smaps_rollup."""
    total = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total += int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return total


def _tree(pid: int) -> list[int]:
    """``pid`` and all its descendants, from each thread's ``children`` file."""
    pids, index = [pid], 0
    while index < len(pids):
        try:
            tasks = list(Path(f"/proc/{pids[index]}/task").iterdir())
        except OSError:
            tasks = []
        for task in tasks:
            try:
                pids += [int(child) for child in (task / "children").read_text().split()]
            except (OSError, ValueError):
                pass
        index += 1
    return list(dict.fromkeys(pids))


def run_sampled(command: list[str], cwd: Path, env: dict[str, str], log: Path, images: int, interval: float) -> TreeRun:
    """Run ``command``, sampling its process tree every ``interval`` s; a failure stops the benchmark."""
    run = TreeRun(images)
    with log.open("w") as handle:
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=handle, stderr=subprocess.STDOUT)
        while process.poll() is None:
            pids = _tree(process.pid)
            rss = uss = 0
            for pid in pids:
                status = _status(pid)
                if not status:
                    continue
                rss += status.get("VmRSS", 0)
                uss += _private_kb(pid)
                if pid == process.pid:
                    run.main_hwm_kb = max(run.main_hwm_kb, status.get("VmHWM", 0))
                    run.samples.append((time.perf_counter() - started, status.get("VmRSS", 0)))
                else:
                    run.child_hwm_kb = max(run.child_hwm_kb, status.get("VmHWM", 0))
            run.tree_rss_kb = max(run.tree_rss_kb, rss)
            run.tree_uss_kb = max(run.tree_uss_kb, uss)
            run.processes = max(run.processes, len(pids))
            time.sleep(interval)
        run.seconds = time.perf_counter() - started
    if process.returncode != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-20:])
        sys.exit(f"benchmark: {' '.join(command[:3])} ... exited {process.returncode}; see {log}\n{tail}")
    if not run.samples:
        run.samples.append((0.0, 0))
    return run


def make_linked_folder(source: list[Path], target: Path, count: int) -> None:
    """``count`` names in ``target``, each a hard link to one of the ``source`` images in turn."""
    target.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        path = source[index % len(source)]
        os.link(path, target / f"img{index:06d}{path.suffix}")


def drop_bulk_outputs(results: Path) -> None:
    """The per-image files of a finished run (GBs for 10,000 images); summaries and the CSV stay."""
    for path in results.iterdir():
        if path.is_file() and path.suffix in {".npy", ".png", ".jpg"}:
            path.unlink()


def memory_runs(work: Path, sizes: list[int], batch_size: int, interval: float, keep: bool) -> list[TreeRun]:
    from anomalib_folder_ext.tools.demo import calibrated_checkpoint

    started = time.perf_counter()
    source = work / "distinct"
    make_folder(source, DISTINCT_IMAGES, size=IMAGE_SIZE)
    distinct = sorted(source.iterdir())
    calibration_dir = work / "calibration"
    make_folder(calibration_dir, 8, seed=1, size=256)  # calibrated_checkpoint wants the model's 256x256
    calibration = [np.asarray(Image.open(path).convert("RGB")) for path in sorted(calibration_dir.iterdir())]
    checkpoint = calibrated_checkpoint(work / "model.ckpt", calibration)
    folders = {}
    for count in sizes:
        folders[count] = work / f"folder_{count}"
        make_linked_folder(distinct, folders[count], count)
    print(f"folders ({', '.join(map(str, sizes))} images) and checkpoint: {time.perf_counter() - started:.0f} s", flush=True)

    bench = Bench(work, checkpoint, batch_size)
    env = subprocess_env(work, PYTHONWARNINGS="ignore")
    runs = []
    for count in sizes:
        command, out = bench.ours_command(folders[count], "32-true", TRIVIAL_MODEL, tag="scale")
        print(f"running: {count} images ...", flush=True)
        run = run_sampled(command, REPO, env, out / "log.txt", count, interval)
        results = out / "results"
        record = finished_record(results)
        run.loop_s, run.startup_s = record["loop_s"], record["startup_s"]
        run.recorded_peak = peak_memory_text(record["ranks"])
        if not keep:
            drop_bulk_outputs(results)
        runs.append(run)
        print(f"  {run.seconds:.1f} s, main VmHWM {run.main_hwm_kb / 1024:.0f} MiB, "
              f"tree RSS {run.tree_rss_kb / 1024:.0f} MiB, tree USS {run.tree_uss_kb / 1024:.0f} MiB", flush=True)
    return runs


def peak_memory_text(ranks: list[dict]) -> str:
    """The finished record's per-rank peaks (``host_mib``, ``gpu_mib``), worded as the summary's
    "peak memory" line."""
    if not ranks:
        return "?"
    peaks = [runinfo.peak_memory_text(rank["host_mib"], rank.get("gpu_mib")) for rank in ranks]
    return " / ".join(peaks) + (" (per rank)" if len(ranks) > 1 else "")


def imported_from(env: dict[str, str]) -> str:
    """Where a subprocess with ``env`` finds the package: it must be this checkout."""
    result = subprocess.run([sys.executable, "-c", "import anomalib_folder_ext; print(anomalib_folder_ext.__file__)"],
                            env=env, capture_output=True, text=True, check=False)
    return result.stdout.strip() or result.stderr.strip()[-200:]


# -- discovery ------------------------------------------------------------------------------------
IMAGE_SUFFIXES = (".png", ".png", ".png", ".jpg", ".JPG", ".jpeg", ".bmp", ".tiff")
OTHER_NAMES = ("notes_{}.txt", "meta_{}.json", "._img{}.png", "img{}.png.part")


def make_empty_files(root: Path, count: int, subfolders: int = 0) -> int:
    """``count`` empty image files (+5 % other names) in ``root`` or spread over ``subfolders``;
    returns how many files were made in all."""
    folders = [root / f"part_{index:03d}" for index in range(subfolders)] if subfolders else [root]
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    flags = os.O_CREAT | os.O_WRONLY | os.O_EXCL
    for index in range(count):
        folder = folders[index % len(folders)]
        os.close(os.open(folder / f"img{index:06d}{IMAGE_SUFFIXES[index % len(IMAGE_SUFFIXES)]}", flags, 0o644))
    others = count // 20
    for index in range(others):
        folder = folders[index % len(folders)]
        os.close(os.open(folder / OTHER_NAMES[index % len(OTHER_NAMES)].format(index), flags, 0o644))
    return count + others


@dataclass
class Discovery:
    layout: str
    files: int
    found: int
    make_s: float
    times: list[float]


def time_discovery(work: Path, count: int, repeats: int) -> list[Discovery]:
    from anomalib_folder_ext.images.discover import list_folder_images

    rows = []
    for layout, subfolders, recursive in (("flat", 0, False), ("100 sub-folders, recursive=True", 100, True)):
        root = work / f"discover_{subfolders}"
        started = time.perf_counter()
        files = make_empty_files(root, count, subfolders)
        make_s = time.perf_counter() - started
        times, found = [], 0
        for _ in range(repeats):
            started = time.perf_counter()
            found = len(list_folder_images(root, recursive=recursive))
            times.append(time.perf_counter() - started)
        rows.append(Discovery(layout, files, found, make_s, times))
        print(f"discovery ({layout}): best {min(times):.2f} s of {', '.join(f'{t:.2f}' for t in times)}", flush=True)
        shutil.rmtree(root)  # the next layout's files replace these: at most one set on disk
    return rows


# -- main -----------------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000], help="folder sizes of the memory runs")
    parser.add_argument("--discover", type=int, default=100000, help="image files for the discovery timing (0: skip)")
    parser.add_argument("--repeats", type=int, default=3, help="discovery timings per layout; the fastest counts")
    parser.add_argument("--batch_size", type=int, default=8, help="as configs/folder.yaml")
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between samples of the process tree")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir and every run's outputs")
    options = parser.parse_args()
    sizes = sorted(set(options.sizes))

    total_started = time.perf_counter()
    warnings.filterwarnings("ignore")  # anomalib's and timm's deprecation notes, while the checkpoint is made
    work = Path(tempfile.mkdtemp(prefix="afe_scale_", dir="/tmp")).resolve()
    os.environ["XDG_CACHE_HOME"] = str(work / "cache")  # before anomalib loads: nothing is downloaded
    print(f"benchmark dir: {work}", flush=True)
    try:
        env = subprocess_env(work, PYTHONWARNINGS="ignore")
        import anomalib_folder_ext

        print(f"package: {Path(anomalib_folder_ext.__file__).parent} (subprocesses: {Path(imported_from(env)).parent})",
              flush=True)
        runs = memory_runs(work, sizes, options.batch_size, options.interval, options.keep) if sizes else []
        discovery = time_discovery(work, options.discover, options.repeats) if options.discover > 0 else []
    finally:
        if options.keep:
            print(f"kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    total_s = time.perf_counter() - total_started
    print()
    print(f"machine: {os.cpu_count()} CPUs; torch {__import__('torch').__version__}; {total_s:.0f} s in all")
    if runs:
        print(f"\nMemory: anomalib predict --config configs/folder.yaml, {TRIVIAL_MODEL}, batch {options.batch_size}, "
              f"{IMAGE_SIZE}x{IMAGE_SIZE} PNG ({DISTINCT_IMAGES} distinct, hard-linked), tree sampled every "
              f"{options.interval:g} s")
        print_table(
            ["images", "wall s", "predict loop s", "images/s (loop)", "main VmHWM MiB", "summary's peak memory",
             "tree RSS peak MiB", "tree USS peak MiB", "worker VmHWM MiB", "processes"],
            [[f"{run.images}", f"{run.seconds:.1f}", f"{run.loop_s:.1f}" if run.loop_s else "?",
              f"{run.images / run.loop_s:.0f}" if run.loop_s else "?", f"{run.main_hwm_kb / 1024:.0f}",
              run.recorded_peak, f"{run.tree_rss_kb / 1024:.0f}", f"{run.tree_uss_kb / 1024:.0f}",
              f"{run.child_hwm_kb / 1024:.0f}", f"{run.processes}"] for run in runs],
        )
        fractions = (0.0, 0.25, 0.5, 0.75, 1.0)
        print_table(["images", *[f"main RSS MiB, {fraction:.0%} of the loop" for fraction in fractions]],
                    [[f"{run.images}", *[f"{run.main_rss_at(fraction):.0f}" for fraction in fractions]] for run in runs])
        if len(runs) > 1:
            small, large = runs[0], runs[-1]
            print_table(
                [f"peak ratio, {large.images} / {small.images} images", "value", "target"],
                [[name, f"{value(large) / max(value(small), 1):.3f}", "<= 1.1"]
                 for name, value in (("main VmHWM", lambda r: r.main_hwm_kb), ("tree RSS", lambda r: r.tree_rss_kb),
                                     ("tree USS", lambda r: r.tree_uss_kb))],
            )
    if discovery:
        print(f"\nDiscovery: discover.list_folder_images on empty files, best of {options.repeats}")
        print_table(
            ["layout", "files", "images found", "make s", "best s", "all s", "target"],
            [[row.layout, f"{row.files}", f"{row.found}", f"{row.make_s:.1f}", f"{min(row.times):.2f}",
              ", ".join(f"{t:.2f}" for t in row.times), "< 5 s"] for row in discovery],
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
