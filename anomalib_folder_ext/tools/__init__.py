"""Around a run: the offline demo (data, a trained model, its score) and splitting a folder into batch folders."""

__all__: list[str] = []
