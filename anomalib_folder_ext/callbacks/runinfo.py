"""Facts about a run, gathered around the predict loop: the config and checkpoint it was given, the
precision that ran, start-up time, peak memory, and every rank's report merged on rank 0."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from lightning.pytorch import Trainer

from anomalib_folder_ext.outputs import summary
from anomalib_folder_ext.outputs.owned import OwnedDir

# Lightning's precision names, as the trainer reports them for what a config may say.
_PRECISION_NAMES = {"32": "32-true", "16": "16-mixed", "bf16": "bf16-mixed", "64": "64-true", "64-true": "64-true"}


def precision_name(value: object) -> str:
    """``trainer.precision`` as the Trainer reports it (``32`` -> ``32-true``), to compare settings.

    Example:
        >>> precision_name(32), precision_name("bf16-mixed")
        ('32-true', 'bf16-mixed')
    """
    return _PRECISION_NAMES.get(str(value), str(value))



@dataclass
class RankReport:
    """What one rank sends to rank 0 at the end: its rows and how its process fared."""

    rows: list[summary.ImageResult]
    startup_s: float | None
    loop_s: float
    host_mib: float  # peak host memory of the process
    gpu_mib: float | None = None  # peak memory torch allocated on its GPU

    @property
    def peak_memory(self) -> str:
        return peak_memory_text(self.host_mib, self.gpu_mib)

    def record(self) -> dict:
        """Its numbers, for the finished record (``.journal/finished.json``) that tools read."""
        return {"images": len(self.rows), "startup_s": _rounded(self.startup_s), "loop_s": _rounded(self.loop_s),
                "host_mib": _rounded(self.host_mib), "gpu_mib": _rounded(self.gpu_mib)}


def peak_memory_text(host_mib: float, gpu_mib: float | None = None) -> str:
    """A process's peaks as the summary words them (also read from finished records by benchmarks).

    Example:
        >>> peak_memory_text(1834.4, None), peak_memory_text(2048, 512)
        ('host 1834 MiB', 'host 2048 MiB, GPU 512 MiB')
    """
    return f"host {host_mib:.0f} MiB" + (f", GPU {gpu_mib:.0f} MiB" if gpu_mib is not None else "")


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def cli_config(trainer: Trainer, key: str) -> object:
    """A value of the CLI's config for this run (kept by its SaveConfigCallback); ``None`` without a CLI."""
    from lightning.pytorch.cli import SaveConfigCallback

    # LightningCLI hands its config to the run only through this callback (the Trainer holds no reference to
    # the CLI), and plain `anomalib predict` builds it itself: so it is looked up, not passed in.
    for callback in trainer.callbacks:
        if isinstance(callback, SaveConfigCallback) and hasattr(callback.config, "get"):
            return callback.config.get(key)
    return None


def requested_checkpoint(trainer: Trainer) -> str | None:
    """The checkpoint this run will load. Lightning sets ``trainer.ckpt_path`` only as it loads the
    weights, after ``setup``; the CLI's config names it before."""
    value = trainer.ckpt_path or cli_config(trainer, "ckpt_path")
    return str(value) if value else None


def checked_checkpoint(trainer: Trainer) -> str | None:
    """The checkpoint this run will load, read once so that a bad file is one line before anything
    loads (under ``anomalib predict`` nothing has read it yet); its resolved path. An exported
    model's graph file stands for it (its runtime checked it as the model was made)."""
    checkpoint = requested_checkpoint(trainer)
    if not checkpoint:
        return getattr(trainer.lightning_module, "model_file", None)
    from anomalib_folder_ext.models.checkpoint import read_checkpoint

    read_checkpoint(checkpoint)
    return str(Path(checkpoint).expanduser().resolve())


def save_run_config(trainer: Trainer, directory: OwnedDir, name: str, config: object = None) -> str | None:
    """The run's resolved config, written into the output dir like every file of the run (never through
    a link); the CLI's own save-config callback, which would follow one, is told it is done. The
    file's name when this rank wrote it. ``config``: this folder's own, in a multi-folder run."""
    from lightning.pytorch.cli import SaveConfigCallback

    written = None
    for callback in trainer.callbacks:
        if isinstance(callback, SaveConfigCallback) and (config is not None or not callback.already_saved):
            if trainer.is_global_zero and callback.save_to_log_dir:
                dumped = callback.parser.dump(config if config is not None else callback.config, skip_none=False)
                directory.write(name, dumped.encode())
                written = name
            callback.already_saved = True  # on every rank, so no rank waits on a broadcast
    return written


def backend_of(model: object) -> str | None:
    """The runtime of an exported model (``None``: the torch model)."""
    return getattr(model, "backend", None)


def device_text(strategy: object) -> str:
    """The device that ran (not the configured ``auto``), and how: ``cuda (DDPStrategy)``."""
    return f"{strategy.root_device.type} ({strategy.__class__.__name__})"


def precision_text(trainer: Trainer) -> str:
    """The precision that ran, and the one asked for when Lightning changed it (16-mixed on a CPU runs as bf16);
    for an exported model, the runtime and the precision it computed in."""
    ran = str(trainer.precision)
    backend_text = getattr(getattr(trainer, "lightning_module", None), "backend_text", None)
    if backend_text:
        return f"{ran}: {backend_text}"
    asked = cli_config(trainer, "trainer.precision")
    if asked is None or precision_name(asked) == ran:
        return ran
    why = ": Lightning has no float16 autocast on a CPU and runs bf16" if (precision_name(asked), ran) == ("16-mixed", "bf16-mixed") else ""
    return f"{ran} (asked for {precision_name(asked)}{why})"


def peak_memory_mib(trainer: Trainer) -> tuple[float, float | None]:
    """Peak host RSS of this process and, on a GPU, the peak memory torch allocated there (else ``None``)."""
    device = trainer.strategy.root_device
    gpu = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return peak_rss_kib() / 1024, gpu


def peak_rss_kib() -> float:
    """This process's own high-water mark (``VmHWM``). ``ru_maxrss`` would not do: Linux carries it
    across ``exec``, so a run started from a large parent process reports the parent's size."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1024 if sys.platform == "darwin" else 1)


def process_age_s() -> float | None:
    """How long this process has been running (Linux ``/proc``); ``None`` where that is unknown."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return uptime - start_ticks / os.sysconf("SC_CLK_TCK")


def gather_to_rank_zero(report: RankReport) -> list[RankReport]:
    """Every rank's report, indexed by rank, on rank 0 (other ranks get ``[]``); no-op in one process."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return [report]
    gathered = [None] * dist.get_world_size() if dist.get_rank() == 0 else None
    dist.gather_object(report, gathered, dst=0)
    return gathered if gathered is not None else []



class LoopClock:
    """When the predict loop started and when its first batch came: the run's start-up and loop time."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.first_batch_at: float | None = None  # the process's first batch: its start-up ends there
        self.loop_from: float | None = None  # this loop's first batch (a watch's period is a loop of its own)
        self.waited: Callable[[], float] = lambda: 0.0  # seconds the loop waited for images yet to land (a watch)

    def start(self) -> None:
        self.started, self.loop_from = time.perf_counter(), None

    def batch(self) -> None:
        now = time.perf_counter()
        if self.first_batch_at is None:
            self.first_batch_at = now
        if self.loop_from is None:
            self.loop_from = now

    def loop_s(self) -> float:
        """First batch (or the loop's start) to now, less the waits for images yet to land: to the last
        file written when called at the end, and a watch's rate counts its busy time only."""
        return max(time.perf_counter() - (self.loop_from or self.started) - self.waited(), 0.0)

    def startup_s(self) -> float | None:
        """Seconds from the process's start to its first batch: imports, checkpoint, workers."""
        age = process_age_s()
        if age is None or self.first_batch_at is None:
            return None
        return age - (time.perf_counter() - self.first_batch_at)
