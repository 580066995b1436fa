"""What a relabel can make from a run's files, decided without a model."""

from __future__ import annotations

from pathlib import Path

import pytest

from anomalib_folder_ext.decision.rule import Thresholds
from anomalib_folder_ext.errors import OutputDirError
from anomalib_folder_ext.outputs.relabel import _with_thresholds, check_masks_can_be_made


def record(normalization: str, npy: bool = True, low: float | None = None, high: float | None = None) -> dict:
    scale = {"normalization": normalization, "map_size": "model"}
    if low is not None:
        scale |= {"low": low, "high": high}
    return {"settings": {"npy": npy}, "map_scale": scale}


def test_new_masks_need_npy_maps_holding_the_raw_map_at_the_threshold():
    check_masks_can_be_made(Path("out"), record("per_image"), 123.0)  # min-max of each map: any threshold
    check_masks_can_be_made(Path("out"), record("model", low=0.1, high=0.5), 0.3)
    for made, words in ((record("per_image", npy=False), "kept no NPY (save_as_npy false)"),
                        (record("model", low=0.1, high=0.5), "hold the raw map only from 0.1 to 0.5"),
                        (record("fixed", low=0.0, high=1.0), "(fixed normalisation) hold the raw map only from 0 to 1"),
                        (record("model"), "its maps' scale is not recorded")):
        with pytest.raises(OutputDirError, match=words.replace("(", r"\(").replace(")", r"\)")) as refused:
            check_masks_can_be_made(Path("out"), made, 2.0)
        assert str(refused.value).startswith("out: ") and "\n" not in str(refused.value)


def test_the_summary_head_gets_the_thresholds_where_a_run_puts_them():
    rule = Thresholds(image=0.5, pixel=0.4, image_source="threshold option", pixel_source="checkpoint")
    head = _with_thresholds({"checkpoint": "m.ckpt", "normalization": "per_image", "map size": "model"}, rule)
    assert list(head) == ["checkpoint", "normalization", "image threshold", "pixel threshold", "map size"]
    assert head["image threshold"] == "0.5 (threshold option)"
    assert list(_with_thresholds({"checkpoint": "m.ckpt"}, rule)) == ["checkpoint", "image threshold", "pixel threshold"]
