"""calibration.json: written, read back, refused for another model and in one line when broken."""

from __future__ import annotations

import json

import pytest

from anomalib_folder_ext.decision.calibration import Calibration, ModelRun, parse_calibration
from anomalib_folder_ext.errors import CalibrationError

RUN = ModelRun("sha256:" + "ab" * 32, "torch", "32-true", (256, 256), path="model.ckpt")


def calibration(**changes) -> Calibration:
    values = {"image_threshold": 0.42, "pixel_threshold": 0.31, "model": RUN, "target_fpr": 0.01,
              "good": {"n": 120, "fpr_upper": 0.024}} | changes
    return Calibration(**values)


def test_the_file_reads_back_as_it_was_written():
    made = calibration(uncertain_below=0.3)
    read = parse_calibration(made.to_json(), "c.json")
    assert read == made and read.path == "c.json"
    rule = read.thresholds()
    assert (rule.image, rule.pixel, rule.uncertain_below, rule.image_source) == (0.42, 0.31, 0.3, "calibration c.json")


def test_another_model_runtime_precision_or_size_is_refused_naming_each_difference():
    made = parse_calibration(calibration().to_json(), "c.json")
    assert made.refusal(RUN) is None
    other = ModelRun("sha256:" + "cd" * 32, "openvino", "int8", (256, 256))
    line = made.refusal(other)
    assert line.startswith("calibration c.json: made for another model (sha256:abababab") and "\n" not in line
    assert "runtime torch vs openvino" in line and "precision 32-true vs int8" in line
    assert "image size 256x256 vs 512x512" in made.refusal(ModelRun(RUN.identity, "torch", "32-true", (512, 512)))


@pytest.mark.parametrize(("edit", "words"), [
    (lambda values: values.update(image_threshold=float("nan")), "image_threshold nan is not a finite number"),
    (lambda values: values.update(image_threshold="0.4"), "image_threshold '0.4' is not a finite number"),
    (lambda values: values["model"].update(image_size=[256]), "model.image_size [256] is not [height, width]"),
    (lambda values: values["model"].pop("identity"), "model.identity None is missing"),
    (lambda values: values.update(version=9), "version 9, this tool reads version 1"),
    (lambda values: values.update(uncertain_below=0.5), "uncertain_below 0.5 must lie below the image threshold"),
])
def test_a_broken_file_is_one_line_naming_the_field(edit, words):
    values = json.loads(calibration().to_json().replace("NaN", "null"))
    edit(values)
    with pytest.raises(CalibrationError) as refused:
        parse_calibration(json.dumps(values), "c.json").thresholds()
    assert str(refused.value).startswith("calibration c.json: ") and str(refused.value).count("c.json") == 1
    assert words in str(refused.value)
    assert "\n" not in str(refused.value) and refused.value.option == "calibration"


def test_text_that_is_no_calibration_is_refused():
    for text in ("not json", "[1, 2]", '{"kind": "x"}'):
        with pytest.raises(CalibrationError, match="calibration c.json: not"):
            parse_calibration(text, "c.json")
