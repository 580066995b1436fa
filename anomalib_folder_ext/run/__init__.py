"""A run as anomalib runs it: options turned into an ``anomalib predict`` config, the checks before the model
loads, one folder or many through anomalib's CLI and Engine, and exports."""

__all__: list[str] = []
