"""What a model file is, read without building a model: exports told from checkpoints, and bad ones named."""

from __future__ import annotations

import json

import pytest

from anomalib_folder_ext.errors import ExportedModelError, InputError
from anomalib_folder_ext.models import content_digest, is_exported, read_checkpoint
from anomalib_folder_ext.models.exported import graph_file


def test_exports_are_graph_files_or_folders(tmp_path):
    assert not is_exported(tmp_path / "model.ckpt")
    assert is_exported(tmp_path / "model.xml") and is_exported(tmp_path / "model.onnx") and is_exported(tmp_path)


def test_an_export_folder_names_its_graph_or_is_refused_in_one_line(tmp_path):
    (tmp_path / "model.onnx").write_bytes(b"")
    assert graph_file(tmp_path) == tmp_path / "model.onnx"
    (tmp_path / "other.xml").write_bytes(b"")
    with pytest.raises(ExportedModelError, match="found model.onnx, other.xml") as refused:
        graph_file(tmp_path)
    assert refused.value.option == "model_path"
    (tmp_path / "export.json").write_text(json.dumps({"tool": "someone else"}))
    with pytest.raises(ExportedModelError, match="not written by anomalib-folder export"):
        graph_file(tmp_path)


def test_a_file_that_is_no_checkpoint_is_refused_naming_it(tmp_path):
    path = tmp_path / "model.ckpt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="model.ckpt"):
        read_checkpoint(path)
    with pytest.raises(InputError, match="no such file"):
        read_checkpoint(tmp_path / "missing.ckpt")


def test_the_content_digest_follows_the_bytes_not_the_name(tmp_path):
    one, two = tmp_path / "one.ckpt", tmp_path / "two.ckpt"
    one.write_bytes(b"weights")
    two.write_bytes(b"weights")
    assert content_digest(one) == content_digest(two)
    two.write_bytes(b"other weights")
    assert content_digest(one) != content_digest(two)


@pytest.mark.parametrize(("field", "value"), [("input_size", "big"), ("input_size", [256]), ("file", "../../elsewhere.xml"),
                                              ("precision", "fp8"), ("post_processor", {"state": {"pixel_max": "high"}}),
                                              ("complete", "yes")])
def test_a_malformed_export_json_field_is_one_line_naming_it(tmp_path, field, value):
    from anomalib_folder_ext.models.exported import TOOL, read_export

    (tmp_path / "model.xml").write_text("<net/>")
    (tmp_path / "model.bin").write_bytes(b"")
    (tmp_path / "export.json").write_text(json.dumps({"tool": TOOL, "file": "model.xml", field: value}))
    with pytest.raises(ExportedModelError, match=f"its field '{field}' is malformed") as refused:
        read_export(tmp_path)
    assert str(tmp_path / "export.json") in str(refused.value) and "\n" not in str(refused.value)


class Payload:
    """Stands in for code a crafted checkpoint would run when unpickled (this one does nothing)."""


def test_a_checkpoint_holding_python_objects_is_refused_without_advice_to_load_it_anyway(tmp_path):
    import torch

    torch.save({"state_dict": {"model.teacher.w": torch.zeros(1), "model.ae.w": torch.zeros(1)}, "payload": Payload()},
               tmp_path / "crafted.ckpt")
    with pytest.raises(InputError, match=r"holds Python objects besides weights \(\S*Payload\), which loading would run") as refused:
        read_checkpoint(tmp_path / "crafted.ckpt")
    assert "weights_only" not in str(refused.value) and "\n" not in str(refused.value)
