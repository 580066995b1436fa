"""Folder-based EfficientAd inference for anomalib: normalised pixel maps and a sortable summary."""

__version__ = "0.1.0"
