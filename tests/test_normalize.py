import numpy as np
import pytest

from anomalib_folder_ext.normalize import map_stats, minmax_normalize


def test_minmax_maps_extremes_to_zero_and_one():
    raw = np.array([[-3.0, 1.0], [5.0, 0.0]], dtype=np.float32)
    out = minmax_normalize(raw)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, (raw + 3.0) / 8.0)
    assert out.min() == 0.0 and out.max() == 1.0


def test_constant_map_becomes_zeros():
    out = minmax_normalize(np.full((4, 5), 7.5))
    assert out.dtype == np.float32 and out.shape == (4, 5)
    assert not out.any()


@pytest.mark.parametrize("dtype", [np.float16, np.float64, np.int32])
def test_other_dtypes_are_widened_to_float32(dtype):
    raw = np.arange(12, dtype=dtype).reshape(3, 4)
    out = minmax_normalize(raw)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.ravel(), np.arange(12) / 11, atol=1e-6)


def test_non_finite_range_gives_zeros_not_nan():
    assert not minmax_normalize(np.array([[0.0, np.inf]])).any()


def test_stats_keep_the_raw_scale_that_compares_across_images():
    low, high = np.array([[0.0, 1.0]]), np.array([[0.0, 10.0]])
    # normalised, both maps are identical; the raw score is what ranks them
    np.testing.assert_array_equal(minmax_normalize(low), minmax_normalize(high))
    s_low, s_high = (map_stats(m, minmax_normalize(m)) for m in (low, high))
    assert (s_low.score, s_high.score) == (1.0, 10.0)
    assert s_high.raw_min == 0.0 and s_high.raw_mean == 5.0 and s_high.norm_mean == 0.5
