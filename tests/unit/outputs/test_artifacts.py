import io

import matplotlib as mpl
import numpy as np
import pytest
from PIL import Image

from anomalib_folder_ext.outputs import artifacts


def stems(names):
    return [str(s) for s in artifacts.output_stems(names)]


def test_stems_mirror_subfolders_and_keep_unique_names():
    assert stems(["a.png", "sub/b.bmp", "c.tif"]) == ["a", "sub/b", "c"]


def test_same_stem_different_extension_never_overwrite():
    assert stems(["a.png", "a.jpg", "b.png"]) == ["a_png", "a_jpg", "b"]


def test_collisions_are_case_insensitive_and_per_folder():
    assert stems(["A.png", "a.PNG", "x/a.png"]) == ["A_png", "a_PNG_2", "x/a"]


def test_renamed_stem_meeting_a_real_name_is_numbered():
    result = stems(["a.png", "a.jpg", "a_png.bmp"])
    assert len({s.casefold() for s in result}) == 3
    assert result[:2] == ["a_png", "a_jpg"]


def test_lut_is_the_matplotlib_colormap():
    lut = artifacts.colormap_lut("viridis")
    expected = np.round(mpl.colormaps["viridis"](np.linspace(0, 1, 256))[:, :3] * 255)
    assert lut.shape == (256, 3) and lut.dtype == np.uint8
    np.testing.assert_array_equal(lut, expected)


def test_unknown_colormap_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown colormap 'nope'"):
        artifacts.colormap_lut("nope")


def test_colorize_looks_levels_up_in_the_table():
    lut = artifacts.colormap_lut("jet")
    rgb = artifacts.colorize(np.array([[0, 255], [128, 7]], dtype=np.uint8), lut)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == np.uint8
    np.testing.assert_array_equal(rgb[0, 0], lut[0])
    np.testing.assert_array_equal(rgb[0, 1], lut[255])
    np.testing.assert_array_equal(rgb[1, 0], lut[128])
    np.testing.assert_array_equal(rgb[1, 1], lut[7])


def test_png_round_trips_exactly():
    rgb = np.random.default_rng(0).integers(0, 256, (17, 23, 3), dtype=np.uint8)
    decoded = np.asarray(Image.open(io.BytesIO(artifacts.encode_png(rgb))))
    np.testing.assert_array_equal(decoded, rgb)


def test_palette_png_decodes_to_the_colorized_levels():
    """A palette PNG: PIL sees the levels as indices, RGB decoding gives the colours."""
    lut = artifacts.colormap_lut("jet")
    levels = np.random.default_rng(1).integers(0, 256, (19, 29), dtype=np.uint8)
    png = Image.open(io.BytesIO(artifacts.encode_png(levels, palette=lut)))
    assert png.mode == "P"
    np.testing.assert_array_equal(np.asarray(png), levels)
    np.testing.assert_array_equal(np.asarray(png.convert("RGB")), artifacts.colorize(levels, lut))


def test_npy_round_trips_exactly():
    array = np.random.default_rng(0).random((5, 6)).astype(np.float32)
    restored = np.load(io.BytesIO(artifacts.encode_npy(array)))
    assert restored.dtype == np.float32
    np.testing.assert_array_equal(restored, array)


def test_ensure_writable_names_the_folder(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(artifacts.OutputDirError, match=f"output_dir {blocker / 'out'}: cannot be created"):
        artifacts.ensure_writable(blocker / "out")
    artifacts.ensure_writable(tmp_path / "new" / "dir")
    assert (tmp_path / "new" / "dir").is_dir()


def test_overlay_blends_the_colour_mapped_map_over_the_image_at_the_maps_size():
    from anomalib_folder_ext.outputs.artifacts import blend_overlay, colormap_lut

    lut = colormap_lut("jet")
    image = np.full((40, 60, 3), 200, dtype=np.uint8)
    levels = np.tile(np.arange(0, 256, 32, dtype=np.uint8), (4, 1))  # a 4 x 8 map: the image is resized to it
    assert blend_overlay(image, levels, lut, alpha=0.0).tolist() == np.full((4, 8, 3), 200).tolist()
    assert np.array_equal(blend_overlay(image, levels, lut, alpha=1.0), lut[levels])
    half = blend_overlay(image, levels, lut, alpha=0.5).astype(int)
    assert np.abs(half - (200 + lut[levels].astype(int)) / 2).max() <= 0.5
