"""What a precision costs on this machine, said when the run starts with it.

bf16 autocast is fast on a CPU only with bf16 instructions (AVX512-BF16, AMX; ``bf16`` on Arm):
without them PyTorch emulates bf16 and the model runs several times slower than in fp32 (7x to 13x
measured on AVX2-only CPUs, docs/PERFORMANCE.md), which nothing else would tell the user.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from anomalib_folder_ext.console import say

if TYPE_CHECKING:
    from lightning.pytorch import Trainer

BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})
_SAID: set[str] = set()  # once per process: a multi-folder run starts many folders with one precision


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> frozenset[str] | None:
    """The CPU's instruction-set flags as Linux lists them (``None`` elsewhere: not known)."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in {"flags", "Features"}:  # x86, Arm
            return frozenset(value.split())
    return None


def slow_precision(precision: str, device_type: str, flags: frozenset[str] | None) -> str | None:
    """The warning for a torch model autocast to bf16 on a CPU without bf16 instructions.

    Example:
        >>> slow_precision("bf16-mixed", "cpu", frozenset({"avx2", "fma"}))[:70]
        'warning: precision bf16-mixed on a CPU without bf16 instructions (AVX5'
        >>> slow_precision("bf16-mixed", "cpu", frozenset({"avx2", "amx_bf16"})), slow_precision("bf16-mixed", "cuda", None)
        (None, None)
    """
    if device_type != "cpu" or not str(precision).startswith("bf16") or flags is None or flags & BF16_FLAGS:
        return None
    return (f"warning: precision {precision} on a CPU without bf16 instructions (AVX512-BF16, AMX): PyTorch "
            "emulates bf16, and the model runs several times slower than in 32-true, the default; choose "
            "32-true on this machine")


def warn_slow_precision(trainer: Trainer, torch_model: bool = True) -> None:
    """Say :func:`slow_precision`'s warning for the trainer's precision and device on stderr, on rank 0,
    once per process; an exported model's runtime (``torch_model`` false) chooses its own kernels."""
    if not (torch_model and trainer.is_global_zero):
        return
    warning = slow_precision(str(trainer.precision), trainer.strategy.root_device.type, cpu_flags())
    if warning and warning not in _SAID:
        _SAID.add(warning)
        say(warning, error=True)
