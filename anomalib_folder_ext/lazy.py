"""Faces that import on first use: ``from anomalib_folder_ext.images import decode_rgb`` loads numpy and
PIL only then, so a command's start (and ``import anomalib_folder_ext``) stays light."""

from __future__ import annotations

import importlib
from collections.abc import Callable


def lazy_face(package: str, names: dict[str, str]) -> Callable[[str], object]:
    """A module ``__getattr__`` that finds each public name in its module (``names``: name -> module).

    Example:
        >>> getattr_ = lazy_face("anomalib_folder_ext", {"InputError": "anomalib_folder_ext.errors"})
        >>> getattr_("InputError").__name__
        'InputError'
    """

    def __getattr__(name: str) -> object:
        if name not in names:
            msg = f"module {package!r} has no attribute {name!r}"
            raise AttributeError(msg)
        return getattr(importlib.import_module(names[name]), name)

    return __getattr__
