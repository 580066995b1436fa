"""Folder-based EfficientAd inference for anomalib: normalised pixel maps and a sortable summary."""

from anomalib_folder_ext.errors import install_excepthook

__version__ = "0.1.0"

install_excepthook()
