"""Mixed precision and the channels-last layout: faster, and still the same maps (within a measured bound)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REPO, run_here, write_images

pytestmark = pytest.mark.slow

# bf16-mixed against 32-true, measured by benchmarks/throughput.py (docs/PERFORMANCE.md): 4.2e-3 on the
# maps and 4.4e-3 on the score on an AVX2 CPU (bf16 emulated), 5.7e-3 and 8.8e-3 on an AMX Xeon. The
# bound allows 6-10x that for this test's own checkpoint and images; a bf16 path that broke the maps
# (wrong layout, wrong scaling) would be far outside it.
BF16_MAX_ABS_NORMALIZED = 0.05
BF16_SCORE_REL = 0.05


def rows(output_dir: Path) -> dict[str, dict[str, str]]:
    from anomalib_folder_ext.outputs.summary import read_results

    return {row["image"]: row for row in read_results(output_dir)}


def test_channels_last_callback_converts_the_weights_and_the_network_input():
    from anomalib.models import EfficientAd

    from anomalib_folder_ext.callbacks import ChannelsLast

    model = EfficientAd(model_size="small").eval()
    seen = []
    first_conv = model.model.teacher.conv1
    first_conv.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    callback = ChannelsLast()
    callback.on_predict_start(None, model)
    with torch.no_grad():
        model.model(torch.rand(1, 3, 256, 256))  # an NCHW input, as the pre-processor's resize returns it
    convolutions = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convolutions and all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convolutions)
    assert seen[0].is_contiguous(memory_format=torch.channels_last)
    assert not seen[0].is_contiguous()  # really NHWC, not a 1x1 corner case
    callback.on_predict_end(None, model)
    seen.clear()
    with torch.no_grad():
        model.model(torch.rand(1, 3, 256, 256))
    assert seen[0].is_contiguous()  # the hook is gone after the run


def test_bf16_mixed_maps_match_fp32(checkpoint, tmp_path, monkeypatch):
    from anomalib_folder_ext.models import precision as precisions

    monkeypatch.setattr(precisions, "_SAID", set())  # once per process: this process may have said it before
    folder = tmp_path / "in"
    write_images(folder, {"a.png": ((256, 256), "PNG"), "b.jpg": ((300, 200), "JPEG")}, seed=3)
    outputs = {}
    for precision in ("32-true", "bf16-mixed"):
        outputs[precision] = tmp_path / precision
        result = run_here(
            ["anomalib", "predict", "--config", str(REPO / "configs/folder.yaml"), "--ckpt_path", str(checkpoint),
             "--data.init_args.folder_path", str(folder), "--data.init_args.output_dir", str(outputs[precision]),
             "--trainer.precision", precision],
            cwd=tmp_path,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        # this machine's CPU decides: the warning when it has no bf16 instructions, only for bf16
        warning = precisions.slow_precision(precision, "cpu", precisions.cpu_flags())
        assert result.stderr.count("without bf16 instructions") == (warning is not None), result.stderr
        assert warning is None or warning in result.stderr
    assert "precision         : bf16-mixed" in (outputs["bf16-mixed"] / "results_summary.txt").read_text()
    exact, mixed = rows(outputs["32-true"]), rows(outputs["bf16-mixed"])
    assert sorted(mixed) == sorted(exact) == ["a.png", "b.jpg"]
    for name, row in exact.items():
        full = np.load(outputs["32-true"] / row["npy"])
        half = np.load(outputs["bf16-mixed"] / mixed[name]["npy"])
        assert half.dtype == np.float32 and half.shape == full.shape
        assert np.abs(half - full).max() <= BF16_MAX_ABS_NORMALIZED, name
        assert float(mixed[name]["score"]) == pytest.approx(float(row["score"]), rel=BF16_SCORE_REL)
        assert not np.array_equal(half, full), "bf16 gave bit-identical maps: autocast did not run"
