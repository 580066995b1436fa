from pathlib import Path

import pytest

from anomalib_folder_ext.images.discover import discover_images, natural_key, normalize_extensions


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


def test_list_folder_images_never_reads_back_the_output_dir(tmp_path):
    from anomalib_folder_ext.images.discover import list_folder_images

    touch(tmp_path, "a.png", "sub/b.png", "results/a_anomaly.png")
    found = list_folder_images(tmp_path, recursive=True, exclude=tmp_path / "results")
    assert [p.as_posix() for p in found] == ["a.png", "sub/b.png"]


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda root: root / "missing", "no such folder"),
        (lambda root: (root / "f.png").write_bytes(b"x") and root / "f.png", "not a folder"),
        (lambda root: (root / "x.txt").write_text("x") and root, "no images found in it (extensions searched: png"),
    ],
    ids=["missing", "a-file", "no-images"],
)
def test_list_folder_images_errors_name_the_folder(tmp_path, setup, message):
    from anomalib_folder_ext.images.discover import list_folder_images
    from anomalib_folder_ext.errors import FolderInputError

    folder = setup(tmp_path)
    with pytest.raises(FolderInputError, match=f"folder_path {folder}: .*") as info:
        list_folder_images(folder)
    assert message in str(info.value)
