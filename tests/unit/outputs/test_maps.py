"""The batched map maths against a plain per-image numpy reference, and the host copy's packing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from anomalib_folder_ext.outputs.maps import STAT_NAMES, minmax_normalize, process_maps, quantize
from anomalib_folder_ext.callbacks.transfer import HostCopy, pack, unpack


def numpy_reference(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """One map the obvious way: min-max in float32, levels rounded, means in float64."""
    values = raw.astype(np.float32)
    value_range = values.max() - values.min()
    ok = np.isfinite(value_range) and value_range > 0
    normalized = (values - values.min()) / value_range if ok else np.zeros_like(values)
    levels = np.clip(normalized * 255.0 + 0.5, 0, 255).astype(np.uint8)
    stats = [float(values.max()), float(values.min()), float(values.mean(dtype=np.float64)),
             float(normalized.mean(dtype=np.float64))]
    return normalized, levels, stats


def test_batch_equals_the_per_image_reference_bit_for_bit():
    rng = np.random.default_rng(0)
    raw = (rng.random((5, 1, 33, 47)) * rng.uniform(0.1, 9, (5, 1, 1, 1)) - 2).astype(np.float32)
    raw[3] = 1.5  # a constant map
    batch = process_maps(torch.from_numpy(raw))
    assert batch.normalized.dtype == torch.float32 and batch.normalized.shape == (5, 33, 47)
    assert batch.levels.dtype == torch.uint8 and batch.stats.shape == (5, len(STAT_NAMES))
    for index in range(5):
        normalized, levels, stats = numpy_reference(raw[index, 0])
        np.testing.assert_array_equal(batch.normalized[index].numpy(), normalized)
        np.testing.assert_array_equal(batch.levels[index].numpy(), levels)
        np.testing.assert_allclose(batch.stats[index].numpy(), stats, rtol=1e-6)
    assert batch.normalized[3].abs().max() == 0 and batch.stats[3, 0] == 1.5


def test_each_map_is_scaled_by_its_own_extremes():
    raw = torch.tensor([[[0.0, 1.0]], [[0.0, 10.0]]])
    batch = process_maps(raw)
    torch.testing.assert_close(batch.normalized[0], batch.normalized[1])  # identical once normalised ...
    assert batch.stats[:, 0].tolist() == [1.0, 10.0]  # ... the raw score is what ranks them
    assert batch.stats[1].tolist() == [10.0, 0.0, 5.0, 0.5]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_other_dtypes_are_widened_to_float32(dtype):
    raw = torch.arange(12, dtype=dtype).reshape(1, 3, 4)
    out = minmax_normalize(raw)
    assert out.dtype == torch.float32
    np.testing.assert_allclose(out.numpy().ravel(), np.arange(12) / 11, atol=1e-6)


def test_non_finite_range_gives_zeros_not_nan():
    assert not minmax_normalize(torch.tensor([[[0.0, float("inf")]]])).any()
    assert not minmax_normalize(torch.tensor([[[0.0, float("nan")]]])).any()


def test_levels_round_and_clip():
    assert quantize(torch.tensor([-0.5, 0.0, 0.001, 0.499 / 255, 0.5, 1.0, 1.5])).tolist() == [0, 0, 0, 0, 128, 255, 255]


def test_levels_can_be_skipped():
    assert process_maps(torch.rand(2, 8, 8), with_levels=False).levels is None


def test_pack_and_unpack_round_trip_every_dtype_and_alignment():
    tensors = {
        "stats": torch.rand(3, 4, dtype=torch.float64),
        "levels": torch.randint(0, 256, (3, 5, 7), dtype=torch.uint8),  # 105 bytes: the next field realigns
        "normalized": torch.rand(3, 5, 7),
        "label": torch.tensor([True, False, True]),
        "strided": torch.rand(4, 6)[:, ::2],  # not contiguous
    }
    flat, layout = pack(tensors)
    assert flat.dtype == torch.uint8 and flat.ndim == 1
    assert all(field.offset % 8 == 0 for field in layout)
    restored = unpack(flat, layout)
    assert list(restored) == list(tensors)
    for name, tensor in tensors.items():
        assert restored[name].dtype == tensor.dtype
        torch.testing.assert_close(restored[name], tensor, rtol=0, atol=0)


def test_host_copy_on_the_cpu_is_the_tensors_themselves():
    maps = torch.rand(2, 4, 4)
    copy = HostCopy({"maps": maps})
    assert copy.wait()["maps"].data_ptr() == maps.data_ptr()  # nothing copied, nothing to wait for


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device; the CPU path is tested above")
def test_host_copy_from_cuda_lands_in_pinned_memory():
    tensors = {"maps": torch.rand(3, 16, 16, device="cuda"), "label": torch.rand(3, device="cuda") > 0.5}
    host = HostCopy(tensors).wait()
    for name, tensor in tensors.items():
        assert host[name].device.type == "cpu" and host[name].is_pinned()
        torch.testing.assert_close(host[name], tensor.cpu(), rtol=0, atol=0)


def test_fixed_range_scales_every_map_alike_and_clips():
    from anomalib_folder_ext.outputs.maps import fixed_range

    raw = torch.tensor([[[0.0, 1.0], [2.0, 3.0]], [[1.0, 1.0], [1.0, 1.5]]])
    batch = process_maps(raw, normalize=fixed_range(1.0, 2.0))
    assert batch.normalized.tolist() == [[[0.0, 0.0], [1.0, 1.0]], [[0.0, 0.0], [0.0, 0.5]]]
    assert batch.stats[:, 0].tolist() == [3.0, 1.5]  # the score stays the raw max
    with pytest.raises(ValueError, match="vmax"):
        fixed_range(2.0, 2.0)


def test_model_normalization_is_anomalibs_own_pixel_normalization():
    """The writer's ``model`` mode gives exactly what anomalib's PostProcessor makes of the anomaly map."""
    from types import SimpleNamespace

    from anomalib.data import InferenceBatch
    from anomalib.post_processing import PostProcessor

    from anomalib_folder_ext.callbacks.scoring import map_normalizer

    post = PostProcessor()
    post.pixel_min.fill_(-0.5)
    post.pixel_max.fill_(2.5)
    post._pixel_threshold.fill_(0.7)  # noqa: SLF001
    raw = torch.linspace(-1, 4, 2 * 9 * 7).reshape(2, 1, 9, 7)
    normalizer = map_normalizer(SimpleNamespace(post_processor=post), "model", None, None)
    mine = process_maps(raw, normalize=normalizer).normalized
    expected = post(InferenceBatch(anomaly_map=raw.clone(), pred_score=raw.amax(dim=(1, 2, 3)))).anomaly_map
    assert torch.equal(mine, expected.squeeze(1))
    assert mine.min() == 0 and mine.max() == 1 and 0 < mine.mean() < 1


def test_model_normalization_without_pixel_statistics_is_refused_in_words():
    from types import SimpleNamespace

    from anomalib.post_processing import PostProcessor

    from anomalib_folder_ext.callbacks.writer import AnomalyMapWriter
    from anomalib_folder_ext.errors import InputError
    from anomalib_folder_ext.callbacks.scoring import map_normalizer

    with pytest.raises(InputError, match="no pixel statistics"):
        map_normalizer(SimpleNamespace(post_processor=PostProcessor()), "model", None, None)
    with pytest.raises(InputError, match="vmin < vmax"):
        AnomalyMapWriter(normalization="fixed", vmin=1.0)


def test_original_size_maps_are_bilinear_resizes_of_the_normalized_map():
    import torch.nn.functional as F  # noqa: N812

    from anomalib_folder_ext.outputs.maps import image_map

    rng = np.random.default_rng(2)
    raw = torch.from_numpy(rng.random((3, 1, 16, 16)).astype(np.float32))
    sizes = [(20, 30), (0, 0), (20, 30)]  # H x W; (0, 0): an unreadable image keeps the model's size
    batch = process_maps(raw, sizes=sizes)
    at_model_size = process_maps(raw).normalized
    assert [tuple(m.shape) for m in batch.normalized] == [(20, 30), (16, 16), (20, 30)]
    expected = F.interpolate(at_model_size[0][None, None], size=(20, 30), mode="bilinear", align_corners=False)[0, 0]
    assert torch.equal(batch.normalized[0], expected)
    assert [tuple(m.shape) for m in batch.levels] == [(20, 30), (16, 16), (20, 30)]
    assert batch.stats[0, 3].item() == pytest.approx(batch.normalized[0].mean().item())  # norm_mean of the written map
    assert torch.equal(batch.stats[:, :3], process_maps(raw).stats[:, :3])  # raw statistics do not depend on the size
    host = HostCopy(batch.host_tensors()).wait()
    assert torch.equal(image_map(host, "normalized", 2), batch.normalized[2])
    assert torch.equal(image_map(host, "levels", 1), batch.levels[1])
