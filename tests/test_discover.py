from pathlib import Path

import pytest

from anomalib_folder_ext.discover import discover_images, natural_key, normalize_extensions


def touch(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")


def test_extensions_any_case_and_non_images_ignored(tmp_path):
    touch(tmp_path, "a.PNG", "b.Jpg", "c.jpeg", "d.BMP", "e.tif", "f.TIFF", "g.txt", "h.gif", "noext", "i.png.bak")
    found = [p.as_posix() for p in discover_images(tmp_path)]
    assert found == ["a.PNG", "b.Jpg", "c.jpeg", "d.BMP", "e.tif", "f.TIFF"]


def test_natural_order_img2_before_img10(tmp_path):
    touch(tmp_path, "img10.png", "img2.png", "img1.png", "IMG3.png", "img02b.png")
    assert [p.name for p in discover_images(tmp_path)] == ["img1.png", "img2.png", "img02b.png", "IMG3.png", "img10.png"]


def test_nesting_needs_recursive_and_keeps_relative_paths(tmp_path):
    touch(tmp_path, "top.png", "sub/inner.png", "sub/deeper/x.jpg", "sub2/y.png")
    assert [p.as_posix() for p in discover_images(tmp_path)] == ["top.png"]
    assert [p.as_posix() for p in discover_images(tmp_path, recursive=True)] == [
        "sub/deeper/x.jpg",
        "sub/inner.png",
        "sub2/y.png",
        "top.png",
    ]


def test_hidden_files_and_folders_skipped(tmp_path):
    touch(tmp_path, "ok.png", "._ok.png", ".cache/z.png")
    assert [p.as_posix() for p in discover_images(tmp_path, recursive=True)] == ["ok.png"]


def test_custom_extensions_normalised():
    assert normalize_extensions([".PNG", "jpg", "png"]) == ("png", "jpg")
    with pytest.raises(ValueError, match="extensions is empty"):
        normalize_extensions(["", "."])


def test_natural_key_compares_folders_part_by_part():
    paths = ["b/img1.png", "a10/img.png", "a2/img.png"]
    assert sorted(paths, key=natural_key) == ["a2/img.png", "a10/img.png", "b/img1.png"]
