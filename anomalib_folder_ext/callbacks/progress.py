"""Progress as lines, for a console that is not a terminal: a log file, SLURM, CI, ``nohup``.

Lightning's progress bar (rich's) redraws itself in a terminal; written to a file it shows nothing
until the run ends, and a long run is minutes of silence. Where the bar cannot draw, rank 0 prints
a line every :data:`EVERY_S` seconds (``ANOMALIB_FOLDER_PROGRESS_S`` to change it, ``0`` for none)
with how far the run is, its rate and the time left. The rate counts every rank: Lightning gives
each rank an equal share of the batches, and rank 0's share stands for the job's.
"""

from __future__ import annotations

import os
import time

from lightning.pytorch import Trainer

from anomalib_folder_ext.console import count, duration, images_per_s, say

EVERY_S = 60.0
EVERY_ENV = "ANOMALIB_FOLDER_PROGRESS_S"


def every_s() -> float:
    """Seconds between two lines: :data:`EVERY_S`, or the environment's (``0``: no lines)."""
    try:
        return max(float(os.environ.get(EVERY_ENV, "") or EVERY_S), 0.0)
    except ValueError:
        return EVERY_S


def bar_draws(trainer: Trainer) -> bool:
    """Whether the trainer's progress bar shows progress as it goes: in a terminal (or a notebook); or
    no bar at all (``enable_progress_bar=False``: the user asked for quiet)."""
    bar = getattr(trainer, "progress_bar_callback", None)
    if bar is None or type(bar).__name__ != "RichProgressBar":
        return True  # no bar wanted, or tqdm's, which prints its updates to any stream
    from rich import get_console

    console = get_console()
    return console.is_interactive or console.is_jupyter


class ProgressLines:
    """The lines of one folder's predict loop on rank 0.

    Example (a batch of 8 a second, a line a minute):
        >>> lines = ProgressLines("out/", images=1000, batches=125, world_size=1, every=60)
        >>> [line for second in range(62) if (line := lines.advance(8, now=float(second)))]
        ['predicting out/: 488 of 1,000 images (49%), 8.00 images/s, ETA 0:01:04']
    """

    def __init__(self, label: str, images: int, batches: int, world_size: int, every: float) -> None:
        self.label, self.images, self.batches, self.world_size, self.every = label, images, batches, world_size, every
        self.done_batches = self.done_images = 0
        self.started = self.last = 0.0  # from the first batch's end: start-up is not the loop's rate

    @classmethod
    def for_trainer(cls, trainer: Trainer, label: str, images: int) -> ProgressLines | None:
        """Lines for this run, or ``None``: not rank 0, a bar that draws, or lines turned off."""
        every = every_s()
        batches = sum(trainer.num_predict_batches or [0])
        if not trainer.is_global_zero or not every or not batches or bar_draws(trainer):
            return None
        return cls(label, images, int(batches), trainer.world_size, every)

    def advance(self, images: int, now: float | None = None) -> str | None:
        """One more batch of ``images`` files done on this rank; the line when one is due."""
        now = time.monotonic() if now is None else now
        self.done_batches += 1
        if self.done_batches == 1:
            self.started = self.last = now
            return None
        self.done_images += images
        if now - self.last < self.every or self.done_batches >= self.batches:
            return None  # not yet due, or the last batch: the run's last line follows
        self.last = now
        share = self.done_batches / self.batches
        rate = self.done_images * self.world_size / max(now - self.started, 1e-9)
        done = min(round(share * self.images), self.images)
        left = f", ETA {duration((self.images - done) / rate)}" if rate > 0 else ""
        return (f"predicting {self.label}: {count(done)} of {count(self.images)} images ({share:.0%}), "
                f"{images_per_s(rate)}{left}")

    def say(self, images: int) -> None:
        line = self.advance(images)
        if line:
            say(line)
