"""A callback used by test_ddp: imported by the anomalib CLI subprocess through PYTHONPATH."""

from lightning.pytorch import Callback


class FailOnRank(Callback):
    """Raises on one rank mid-run, to check that the other ranks do not wait forever."""

    def __init__(self, rank: int = 1) -> None:
        self.rank = rank

    def on_predict_batch_end(self, trainer, *args, **kwargs) -> None:  # noqa: ANN001, ANN002, ANN003
        if trainer.global_rank == self.rank:
            msg = f"injected failure on rank {self.rank}"
            raise RuntimeError(msg)
