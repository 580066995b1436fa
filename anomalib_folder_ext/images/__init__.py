"""Files to pixels: which files of a folder are images, in what order, when a file landing in a watched
folder is complete, and how each decodes to RGB."""

from anomalib_folder_ext.lazy import lazy_face

_DECODE, _DISCOVER = "anomalib_folder_ext.images.decode", "anomalib_folder_ext.images.discover"
_NAMES = {"DEFAULT_MAX_PIXELS": _DECODE, "decode_image": _DECODE, "decode_rgb": _DECODE, "failure_reason": _DECODE,
          "DEFAULT_EXTENSIONS": _DISCOVER, "list_folder_images": _DISCOVER, "natural_key": _DISCOVER,
          "FolderWatch": "anomalib_folder_ext.images.watch"}
__all__ = sorted(_NAMES)
__getattr__ = lazy_face(__name__, _NAMES)
