"""calibrate's rules without a model: what it asks for, where its file may go, which mask is a defect's."""

from __future__ import annotations

import os

import pytest

from anomalib_folder_ext.decision.calibration import Calibration, ModelRun
from anomalib_folder_ext.errors import InputError, OutputDirError
from anomalib_folder_ext.run.calibrate import CalibrationRequest, calibration_table, check_out, find_mask, write_calibration
from anomalib_folder_ext.run.spec import RunSpec

SPEC = RunSpec(model_path="model.ckpt")


def test_the_request_is_checked_before_anything_runs(tmp_path):
    request = CalibrationRequest(SPEC, tmp_path / "good", tmp_path / "c.json")
    assert request.runs == tmp_path / "c_runs" and request.pixel_fpr == 1e-4
    for changes, words in (({"target_fpr": 0.0}, "target_fpr 0.0: must lie between 0 and 1"),
                           ({"pixel_fpr": 1.5}, "pixel_fpr 1.5: must lie between 0 and 1"),
                           ({"uncertain_fpr": 0.005}, "uncertain_fpr 0.005: must lie between target_fpr (0.01) and 1"),
                           ({"mask_folder": tmp_path}, "mask_folder: masks belong to the defect_folder's images")):
        with pytest.raises(InputError, match=words.replace("(", r"\(").replace(")", r"\)")) as refused:
            CalibrationRequest(SPEC, tmp_path / "good", **changes)
        assert refused.value.option == next(iter(changes))


def test_the_calibration_file_is_new_or_an_earlier_one_never_a_link_nor_another_file(tmp_path):
    calibration = Calibration(0.4, 0.3, ModelRun("sha256:1", "torch", "32-true", (256, 256)), 0.01,
                              good={"n": 100, "above_threshold": 0, "fpr_upper": 0.03, "confidence": 0.95,
                                    "smallest_fpr": 0.0099}, pixels={"target_fpr": 1e-4}, path="c.json")
    out = tmp_path / "new" / "c.json"
    write_calibration(out, calibration)  # a new folder, a new file
    write_calibration(out, calibration)  # an earlier calibration: replaced
    assert out.read_text() == calibration.to_json() and sorted(os.listdir(out.parent)) == ["c.json"]
    theirs = tmp_path / "notes.json"
    theirs.write_text('{"mine": 1}')
    link = tmp_path / "link.json"
    link.symlink_to(out)
    for path, words in ((theirs, "exists and is not a calibration of this tool"), (link, "is a symbolic link"),
                        (tmp_path, "is a folder")):
        with pytest.raises(OutputDirError, match=words) as refused:
            check_out(path)
        assert refused.value.option == "out" and "\n" not in str(refused.value)
    assert theirs.read_text() == '{"mine": 1}'
    table = calibration_table(calibration)
    assert table[-1].startswith("c.json: image threshold 0.4, pixel threshold 0.3; false positives at most 3.00%")


def test_a_defects_mask_has_its_relative_path_and_stem_or_stem_mask(tmp_path):
    masks = tmp_path / "masks"
    (masks / "sub").mkdir(parents=True)
    (masks / "a.png").write_bytes(b"")
    (masks / "sub" / "b_mask.bmp").write_bytes(b"")
    assert find_mask(masks, "a.jpg") == masks / "a.png"
    assert find_mask(masks, "sub/b.png") == masks / "sub" / "b_mask.bmp"
    assert find_mask(masks, "b.png") is None and find_mask(masks, "other/a.png") is None
