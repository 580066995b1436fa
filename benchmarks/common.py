"""What the benchmark scripts share: where the checkout and its console scripts are, generated
folders, timed runs of our pipeline and the finished record they leave, the bare model, the map
error against a reference run, and the table printer.

A script run as ``python benchmarks/<script>.py`` has ``benchmarks/`` on its path, so
``from common import ...`` works; no benchmark script imports another. Nothing here imports
anomalib or torch at import time: the scripts set ``XDG_CACHE_HOME`` first.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]  # the checkout these scripts are in (a worktree: that one)
BIN = Path(sys.executable).parent  # this environment's console scripts: anomalib, anomalib-folder, py-spy


def subprocess_env(work: Path, **extra: str) -> dict[str, str]:
    """This checkout's package and ``benchmarks/`` (the I/O-ceiling model) first on the path, ahead
    of an editable install of another checkout, the inherited path after them; anomalib's cache
    private to the run."""
    path = [str(REPO), str(REPO / "benchmarks"), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "XDG_CACHE_HOME": str(work / "cache"), "PYTHONPATH": os.pathsep.join(dict.fromkeys(path)),
            **extra}


@contextmanager
def scratch(prefix: str, keep: bool = False) -> Iterator[Path]:
    """A temp dir for one benchmark: deleted at the end, whatever happened, unless ``keep`` (then its path is said)."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield work
    finally:
        if keep:
            print(f"kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def journal_rows(output_dir: Path) -> list:
    """A finished run's rows as its journal keeps them: full-precision scores, decisions (``ImageResult``)."""
    from anomalib_folder_ext.outputs.journal import read_journal

    return list(read_journal(output_dir).rows.values())


def print_table(header: list[str], rows: list[list]) -> None:
    """A markdown table after a blank line; the first column left-aligned, the others right."""
    print()
    print("| " + " | ".join(header) + " |")
    print("|---|" + "---:|" * (len(header) - 1))
    for row in rows:
        print("| " + " | ".join(str(cell) for cell in row) + " |")


# -- folders --------------------------------------------------------------------------------------
def make_folder(folder: Path, count: int, seed: int = 0, size: int = 256, fmt: str = "PNG") -> None:
    """``count`` ``size``x``size`` crops of one smooth random texture, with noise: cheap, all different.

    Generated in parallel on every CPU; the files depend only on the arguments.
    """
    from concurrent.futures import ProcessPoolExecutor

    folder.mkdir(parents=True, exist_ok=True)
    chunks = [range(start, min(start + 250, count)) for start in range(0, count, 250)]
    with ProcessPoolExecutor(max_workers=min(len(chunks), os.cpu_count() or 1) or 1) as pool:
        list(pool.map(_make_images, [(folder, chunk, seed, size, fmt) for chunk in chunks]))


def _make_images(job: tuple[Path, range, int, int, str]) -> None:
    folder, indices, seed, size, fmt = job
    rng = np.random.default_rng(seed)
    coarse = (rng.random((size // 16 + 2, size // 16 + 2, 3)) * 255).astype(np.uint8)
    texture = np.asarray(Image.fromarray(coarse).resize((4 * size, 4 * size), Image.BICUBIC), dtype=np.int16)
    suffix = {"PNG": "png", "JPEG": "jpg"}[fmt]
    for index in indices:
        crop_rng = np.random.default_rng((seed, index))
        top, left = crop_rng.integers(0, 3 * size, 2)
        crop = texture[top : top + size, left : left + size] + crop_rng.integers(-6, 7, (size, size, 3))
        picture = Image.fromarray(np.clip(crop, 0, 255).astype(np.uint8))
        picture.save(folder / f"img{index:05d}.{suffix}", **({"compress_level": 1} if fmt == "PNG" else {"quality": 90}))


def link_subset(source: Path, target: Path, count: int) -> None:
    """The first ``count`` images of ``source`` as hard links: the same bytes, no second copy."""
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.iterdir())[:count]:
        link = target / path.name
        if not link.exists():
            os.link(path, link)


# -- runs -----------------------------------------------------------------------------------------
def finished_record(output_dir: Path) -> dict:
    """The record a finished run of ours leaves for tools (``.journal/finished.json``): ``predicted``,
    ``loop_s`` (first batch to last file written, the slowest rank), ``startup_s`` (rank 0's process
    start to first batch, or ``None``), and per rank in ``ranks``: ``host_mib``, ``gpu_mib`` (peak
    memory; ``None`` off a GPU). A run that exited 0 without one stops the benchmark."""
    from anomalib_folder_ext.outputs.journal import read_finished

    record = read_finished(output_dir)
    if record is None:
        sys.exit(f"benchmark: no finished record (.journal/finished.json) in {output_dir}")
    return record


@dataclass
class Timed:
    seconds: float
    peak_rss_mb: float
    loop_s: float | None = None  # our pipeline's own predict-loop time (its finished record)


def run_timed(command: list[str], cwd: Path, env: dict[str, str], log: Path) -> Timed:
    """Wall time and peak RSS of one subprocess; its output goes to ``log``; a failure stops the benchmark.

    Peak RSS is the main process's ``VmHWM`` (its own high-water mark since exec), polled: a
    fork's ``ru_maxrss`` would start at this benchmark's own size.
    """
    peak_kb = 0
    with log.open("w") as handle:
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd, env=env, stdout=handle, stderr=subprocess.STDOUT)
        while process.poll() is None:
            peak_kb = max(peak_kb, _high_water_kb(process.pid))
            time.sleep(0.05)
        seconds = time.perf_counter() - started
    if process.returncode != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-15:])
        sys.exit(f"benchmark: {' '.join(command[:3])} ... exited {process.returncode}; see {log}\n{tail}")
    return Timed(seconds, peak_kb / 1024)


def _high_water_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


class Bench:
    """Stock ``anomalib predict`` and ours on one checkpoint, each a real subprocess under ``work``."""

    def __init__(self, work: Path, checkpoint: Path, batch_size: int) -> None:
        self.work = work
        self.checkpoint = checkpoint
        self.batch_size = batch_size
        self.env = subprocess_env(work)

    def stock(self, folder: Path) -> Timed:
        cwd = self.work / f"stock_{folder.name}"
        cwd.mkdir(exist_ok=True)
        command = [str(BIN / "anomalib"), "predict", "--model", "anomalib.models.EfficientAd",
                   "--data", str(folder), "--ckpt_path", str(self.checkpoint)]
        return run_timed(command, cwd, self.env, cwd / "log.txt")

    def ours(
        self, folder: Path, precision: str, model_class: str | None = None, tag: str = "ours", extra: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> Timed:
        command, out = self.ours_command(folder, precision, model_class, tag, extra)
        timed = run_timed(command, REPO, {**self.env, **(env or {})}, out / "log.txt")
        timed.loop_s = finished_record(out / "results")["loop_s"]
        return timed

    def ours_command(
        self, folder: Path, precision: str, model_class: str | None = None, tag: str = "ours", extra: Sequence[str] = ()
    ) -> tuple[list[str], Path]:
        """``anomalib predict`` with configs/folder.yaml and an override file; results in ``<out>/results``."""
        out = self.work / f"{tag}_{precision}_{folder.name}"
        out.mkdir(exist_ok=True)
        override = [
            "data:", "  init_args:", f"    folder_path: {folder}", f"    output_dir: {out / 'results'}",
            f"    batch_size: {self.batch_size}",
            f"ckpt_path: {self.checkpoint}", "trainer:", f"  precision: {precision}",
        ]
        if model_class:
            override[:0] = ["model:", f"  class_path: {model_class}"]
        (out / "override.yaml").write_text("\n".join(override) + "\n")
        command = [str(BIN / "anomalib"), "predict", "--config", str(REPO / "configs/folder.yaml"),
                   "--config", str(out / "override.yaml"), *extra]
        return command, out


# -- the model alone, and what precision costs the maps --------------------------------------------
AUTOCAST_DTYPES = {"bf16-mixed": "bfloat16", "16-mixed": "float16"}


@dataclass
class BareModel:
    images_per_s: float
    first_call_s: float  # the first forward: with torch.compile, the compile time


def bare_model(
    checkpoint: Path, precision: str, channels_last: bool, batch: int, batches: int, device: str = "cpu",
    compile_model: bool = False,
) -> BareModel:
    """The checkpoint's network alone, autocast as Lightning's ``precision`` does: warm-up, then timed batches."""
    import torch
    from anomalib.models import EfficientAd

    network = EfficientAd.load_from_checkpoint(checkpoint, map_location=device).model.eval()
    images = torch.rand(batch, 3, 256, 256, device=device)
    if channels_last:
        network = network.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
    if compile_model:
        network = torch.compile(network)
    dtype = getattr(torch, AUTOCAST_DTYPES.get(precision, "float32"))

    def synchronize() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    with torch.inference_mode(), torch.autocast(device, dtype=dtype, enabled=precision in AUTOCAST_DTYPES):
        started = time.perf_counter()
        network(images)
        synchronize()
        first_call_s = time.perf_counter() - started
        for _ in range(2 if device == "cuda" else 0):
            network(images)
        synchronize()
        started = time.perf_counter()
        for _ in range(batches):
            network(images)
        synchronize()
        return BareModel(batch * batches / (time.perf_counter() - started), first_call_s)


def map_error(reference: Path, other: Path) -> tuple[float, float, int]:
    """Max |normalised map difference|, max relative score difference, and how many images were compared."""
    from anomalib_folder_ext.outputs.summary import read_results

    expected = {row["image"]: row for row in read_results(reference)}
    actual = {row["image"]: row for row in read_results(other)}
    worst_map = worst_score = 0.0
    for name, row in actual.items():
        truth = expected[name]
        worst_map = max(worst_map, float(np.abs(np.load(other / row["npy"]) - np.load(reference / truth["npy"])).max()))
        score = float(truth["score"])
        worst_score = max(worst_score, abs(float(row["score"]) - score) / max(abs(score), 1e-12))
    return worst_map, worst_score, len(actual)
