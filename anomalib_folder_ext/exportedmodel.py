"""``anomalib_folder_ext.exportedmodel.ExportedModel``, the class path configs of exported models name."""

from anomalib_folder_ext.models.exportedmodel import ExportedModel

__all__ = ["ExportedModel"]
