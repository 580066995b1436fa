"""The examples in the docstrings run as written (every module of the package)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import tempfile

import pytest

import anomalib_folder_ext

MODULES = sorted(info.name for info in pkgutil.walk_packages(anomalib_folder_ext.__path__, "anomalib_folder_ext.")
                 if not info.name.endswith("__main__"))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # the examples' temporary folders go with the test's
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
