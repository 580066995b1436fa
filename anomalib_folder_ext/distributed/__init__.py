"""Several ranks, one job: decisions made once on rank 0 and broadcast, the watch over lost ranks, and how nodes meet."""

from anomalib_folder_ext.lazy import lazy_face

_RANKS = "anomalib_folder_ext.distributed.ranks"
_NAMES = {"DecidedOnRankZero": _RANKS, "decided_on_rank_zero": _RANKS, "distributed": _RANKS}
__all__ = sorted(_NAMES)
__getattr__ = lazy_face(__name__, _NAMES)
