"""A run touches only what it owns, on the pure functions (no model, no subprocess): writes never
through a link nor out of the dir, deletes only what a run recorded, output dirs that are not the
tool's refused, resume trusting only rows and inputs it can verify, safe CSV cells and report links,
a split plan read with suspicion and a move that survives a kill, numbers that must be finite."""

from __future__ import annotations

import csv
import errno
import io
import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anomalib_folder_ext.outputs import journal, outputdir
from anomalib_folder_ext.outputs.reuse import reusable_rows
from anomalib_folder_ext.tools import split
from anomalib_folder_ext.outputs.outputroot import check_output_root
from anomalib_folder_ext.models.checkpoint import content_digest
from anomalib_folder_ext.data.datamodule import scheduled_indices
from anomalib_folder_ext.images.decode import decode_image
from anomalib_folder_ext.images.discover import list_folder_images
from anomalib_folder_ext.errors import FolderInputError, OutputDirError
from anomalib_folder_ext.outputs.owned import OwnedDir, temporary_name
from anomalib_folder_ext.outputs.report import file_href, html_text
from anomalib_folder_ext.outputs.runplan import OutputNames
from anomalib_folder_ext.outputs.summary import ImageResult, csv_text, parse_results


def tree(root: Path) -> dict[str, bytes | str]:
    """Every entry under ``root``: a file's bytes, a link's target, a folder as "dir"."""
    found: dict[str, bytes | str] = {}
    for path in sorted(root.rglob("*")):
        key = path.relative_to(root).as_posix()
        found[key] = f"-> {os.readlink(path)}" if path.is_symlink() else "dir" if path.is_dir() else path.read_bytes()
    return found


# -- writing: atomic, inside the dir, never through a link --------------------------------------------
def test_writes_are_atomic_make_ordinary_files_and_leave_no_temporary(tmp_path):
    out = OwnedDir(tmp_path / "out", create=True)
    out.write("x/y/f.bin", b"first")
    out.write("x/y/f.bin", b"second")
    target = tmp_path / "out" / "x" / "y" / "f.bin"
    assert target.read_bytes() == b"second" and sorted(p.name for p in target.parent.iterdir()) == ["f.bin"]
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


def test_a_planted_link_is_never_written_through_and_no_path_leaves_the_dir(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "precious.txt").write_text("the user's")
    root = tmp_path / "out"
    root.mkdir()
    (root / "config.yaml").symlink_to(outside / "precious.txt")
    (root / "sub").symlink_to(outside, target_is_directory=True)
    (root / ".journal").symlink_to(outside, target_is_directory=True)
    out = OwnedDir(root)
    before = tree(outside)
    with pytest.raises(OutputDirError, match=r"config.yaml: is a symbolic link"):
        out.write("config.yaml", b"run config")
    with pytest.raises(OutputDirError, match=r"sub: is a symbolic link"):
        out.write("sub/precious_anomaly.npy", b"map")
    with pytest.raises(OutputDirError, match=r"\.journal: is a symbolic link"):
        out.open_append(".journal/rank0.jsonl")
    for escape in ("../outside/precious.txt", "/etc/passwd", "a/../../x", ""):
        with pytest.raises(OutputDirError, match="not a path inside"):
            out.write(escape, b"x")
    assert not out.remove("config.yaml") and not out.remove("sub/precious.txt")  # a link is never deleted through
    assert tree(outside) == before and (root / "config.yaml").is_symlink()


def test_a_temporary_never_takes_a_name_that_exists_nor_goes_through_a_link_there(tmp_path):
    """A file (someone's, or a killed write's leftover) or a link under the temporary's name stays as it is."""
    out = OwnedDir(tmp_path, create=True)
    (tmp_path / temporary_name("a_anomaly.npy")).write_bytes(b"someone's file")
    (tmp_path / "target.txt").write_text("keep")
    (tmp_path / temporary_name("b_anomaly.npy")).symlink_to(tmp_path / "target.txt")
    out.write("a_anomaly.npy", b"whole")
    out.write("b_anomaly.npy", b"map")
    assert (tmp_path / "a_anomaly.npy").read_bytes() == b"whole" and (tmp_path / "b_anomaly.npy").read_bytes() == b"map"
    assert (tmp_path / temporary_name("a_anomaly.npy")).read_bytes() == b"someone's file"
    assert (tmp_path / temporary_name("b_anomaly.npy")).is_symlink() and (tmp_path / "target.txt").read_text() == "keep"
    assert not list(tmp_path.glob("*.1.tmp"))  # the next free name was used, then renamed into place


# -- an output dir must be the tool's ------------------------------------------------------------------
PLAN = OutputNames.for_images(["a.png", "b.png"])


def test_the_file_systems_root_and_a_home_directory_are_never_output_dirs(tmp_path, monkeypatch):
    home = tmp_path / "home" / "user"
    home.mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    for refused, words in ((Path("/"), "the root of the file system"), (home, "your home directory"),
                           (tmp_path / "home", "holds your home directory")):
        with pytest.raises(OutputDirError, match=words):
            outputdir.check_output_dir(refused, None, PLAN, reuse=True, allow_other_files=True)
    assert outputdir.check_output_dir(home / "results", None, PLAN, reuse=False) is None


def test_a_dir_of_someone_elses_files_is_refused_unless_allowed_and_their_files_never_replaced(tmp_path):
    out = tmp_path / "shared"
    out.mkdir()
    (out / "notes.txt").write_text("the user's")
    with pytest.raises(OutputDirError, match=r"is not empty \(1 entries: notes.txt\) and holds no run of this tool"):
        outputdir.check_output_dir(out, None, PLAN, reuse=True)
    assert outputdir.check_output_dir(out, None, PLAN, reuse=False, allow_other_files=True) is None
    (out / "a_anomaly.png").write_text("the user's own picture")
    with pytest.raises(OutputDirError, match=r"a_anomaly.png: exists and is not from a run of this tool"):
        outputdir.check_output_dir(out, None, PLAN, reuse=False, allow_other_files=True)
    (out / "a_anomaly.png").unlink()
    for fixed in ("config.yaml", "results_summary.txt", "report.html"):
        (out / fixed).write_text("the user's")
        with pytest.raises(OutputDirError, match=rf"its {fixed} is not from a run of this tool"):
            outputdir.check_output_dir(out, None, PLAN, reuse=True, allow_other_files=True)
        (out / fixed).unlink()


def test_links_among_the_names_a_run_writes_are_refused_before_anything(tmp_path):
    elsewhere = tmp_path / "elsewhere.yaml"
    elsewhere.write_text("the user's")
    for name in ("config.yaml", ".journal", "a_anomaly.npy"):
        out = tmp_path / f"out_{name.strip('.')}"
        out.mkdir()
        OwnedDir(out).write(".journal/owner.json", b"{}")  # a dir of this tool's
        if name == ".journal":
            (out / ".journal" / "owner.json").unlink()
            (out / ".journal").rmdir()
        (out / name).symlink_to(elsewhere)
        with pytest.raises(OutputDirError, match="is a symbolic link"):
            outputdir.check_output_dir(out, None, PLAN, reuse=True, allow_other_files=True)
    assert elsewhere.read_text() == "the user's"


def test_a_file_where_a_recursive_run_needs_a_folder_is_refused_before_anything(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    OwnedDir(out).write(".journal/owner.json", b"{}")
    (out / "sub").write_text("a file")
    with pytest.raises(OutputDirError, match=r"sub: is a file where the run needs a folder"):
        outputdir.check_output_dir(out, None, OutputNames.for_images(["sub/x.png"]), reuse=False)


def test_overwrite_deletes_exactly_what_an_earlier_run_recorded(tmp_path):
    """Planted rows point out of the dir, at an input image, at a file of another name: none is deleted;
    nor is a hidden ``*.tmp`` of the user's, inside the input folder or beside the maps."""
    out = tmp_path / "out"
    images = out / "images"  # the input folder inside the output dir
    (out / "sub").mkdir(parents=True)
    images.mkdir()
    directory = OwnedDir(out)
    journal.write_owner(directory)
    for name in ("a_anomaly.npy", "a_anomaly.png", "sub/b_anomaly.npy", "config.yaml", "results_summary.txt",
                 temporary_name("c_anomaly.npy")):
        (out / name).write_text("the run's")
    (tmp_path / "outside_anomaly.npy").write_text("not the run's")
    (images / "photo_anomaly.png").write_text("an input image")
    (images / ".draft.tmp").write_text("the user's draft")
    (out / ".notes.tmp").write_text("the user's")
    (out / "mine.txt").write_text("the user's")
    (out / "results.csv").write_text(csv_text([
        ImageResult("a.png", npy="a_anomaly.npy", png="a_anomaly.png"), ImageResult("sub/b.png", npy="sub/b_anomaly.npy"),
        ImageResult("evil.png", npy="../outside_anomaly.npy", png="/etc/passwd"),
        ImageResult("input.png", png="images/photo_anomaly.png"), ImageResult("other.png", npy="mine.txt"),
    ]))
    assert outputdir.earlier_run(directory) == "results.csv of 5 images"
    plan = OutputNames.for_images(["a.png", "c.png"])
    outputdir.remove_earlier_run(directory, plan, protect=images)
    assert sorted(tree(out)) == [".journal", ".journal/owner.json", ".notes.tmp", "images", "images/.draft.tmp",
                                 "images/photo_anomaly.png", "mine.txt"]
    assert (tmp_path / "outside_anomaly.npy").exists() and outputdir.earlier_run(directory) is None


def test_a_run_refused_by_a_live_lock_takes_nothing_back(tmp_path):
    out = OwnedDir(tmp_path)
    (tmp_path / "config.yaml").write_text("the winner's")
    outputdir.remove_unused(out, written=[], created=True)  # what a refused run (it wrote nothing) does
    assert (tmp_path / "config.yaml").read_text() == "the winner's"
    outputdir.remove_unused(out, written=["config.yaml", ".journal/owner.json"], created=True)
    assert not tmp_path.exists()


def test_an_output_root_holding_someone_elses_combined_file_names_is_refused(tmp_path):
    (tmp_path / "index.html").write_text("<html>the user's site</html>")
    with pytest.raises(OutputDirError, match=r"index.html: is not from a run of this tool \(no all_batches.json"):
        check_output_root(tmp_path)
    (tmp_path / "all_batches.csv").write_text(",".join(("batch", *csv_text([]).strip().split(","))) + "\n")
    check_output_root(tmp_path)  # an earlier version's combined files: this tool's own
    with pytest.raises(OutputDirError, match="root of the file system"):
        check_output_root(Path("/"))


# -- input discovery: never this tool's outputs -------------------------------------------------------
def test_output_dirs_and_roots_are_never_read_as_inputs(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    earlier = tmp_path / "results" / "inference_results_x"
    earlier.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(earlier / "a_anomaly.png")
    (earlier / ".journal").mkdir()
    root = tmp_path / "sub_root"
    root.mkdir()
    (root / "all_batches.json").write_text("{}")
    Image.new("RGB", (8, 8)).save(root / "index_thumb.png")
    assert [p.as_posix() for p in list_folder_images(tmp_path, recursive=True)] == ["a.png"]
    with pytest.raises(FolderInputError, match="is an output folder of this tool"):
        list_folder_images(earlier)


# -- resume verifies what it resumes ------------------------------------------------------------------
def test_resume_reuses_only_rows_it_can_verify(tmp_path):
    out, folder = tmp_path / "out", tmp_path / "in"
    out.mkdir()
    folder.mkdir()
    names = ["a.png", "b.png", "c.png", "d.png", "e.png"]
    for name in names:
        (folder / name).write_bytes(name.encode())
    plan = OutputNames.for_images(names, png=False)
    directory = OwnedDir(out)
    rows = []
    for name in names:
        stem = name[0]
        directory.write(f"{stem}_anomaly.npy", b"map")
        rows.append(ImageResult(name, npy=f"{stem}_anomaly.npy", score=1.0, source=journal.file_stamp(folder / name)))
    rows[1].npy = "../../x_anomaly.npy"  # a planted row pointing out of the dir
    rows[2].npy = "c_anomaly.png"  # not the file this run writes for c.png
    log = journal.Journal(directory, rank=0, settings={})
    log.append(rows)
    log.close()
    with (out / ".journal" / "rank0.jsonl").open("a") as handle:
        handle.write(json.dumps({"image": "e.png", "status": "ok", "npy": "e_anomaly.npy", "score": "11.7"}) + "\n")
    (folder / "d.png").write_bytes(b"another picture under the same name")
    reuse = reusable_rows(journal.read_journal(directory), directory, plan, folder)
    assert list(reuse.complete) == ["a.png", "e.png"] and reuse.changed == ["d.png"]
    assert reuse.complete["e.png"].score == 1.0  # the planted line with its made-up score is set aside
    assert [item.split(":")[0] for item in reuse.untrusted] == [".journal/rank0.jsonl", "b.png", "c.png"]
    line = reuse.summary_line()
    assert line.startswith("resume: earlier rows not reused: 1 changed since") and "3 not written by this tool" in line


def test_rank_0_prepares_the_output_dir_and_the_other_ranks_join_it_writing_nothing(tmp_path, monkeypatch):
    """Rank 0 alone reads the dir and decides (the other ranks get its plan), then makes it ready;
    a rank that joins afterwards only opens it: no rank judges a half-made dir."""
    from anomalib_folder_ext.options import WriterOptions
    from anomalib_folder_ext.outputs.rundir import RunDirectory

    monkeypatch.setenv("MASTER_PORT", "29500")  # the one lock token of a DDP run
    out, folder = tmp_path / "out", tmp_path / "in"
    folder.mkdir()
    for name in ("a.png", "b.png"):
        (folder / name).write_bytes(name.encode())
    options = WriterOptions(save_as_image=False, resume=True)
    outputs = OutputNames.for_options(options, ["a.png", "b.png"])

    def rank() -> RunDirectory:
        return RunDirectory(out, folder, outputs, options, world_size=2)

    first = rank()
    assert first.prepare({}).earlier == {}
    assert sorted(tree(out)) == [".journal", ".journal/owner.json", ".lock"]
    log = journal.Journal(first.directory, rank=0, settings={})
    first.directory.write("a_anomaly.npy", b"map")
    log.append([ImageResult("a.png", npy="a_anomaly.npy", score=1.0, source=journal.file_stamp(folder / "a.png"))])
    log.close()
    first.directory.write(temporary_name("b_anomaly.npy"), b"half a map")  # the interrupted write
    first.release(failed=True)
    first.close()

    before = tree(out)
    resumed = rank()
    assert list(resumed.prepare({}).earlier) == ["a.png"]
    assert sorted(set(before) - set(tree(out))) == [temporary_name("b_anomaly.npy")]
    assert sorted(set(tree(out)) - set(before)) == [".lock"]
    prepared = tree(out)
    other = rank()
    other.join()  # the other rank opens what rank 0 made ready, writing nothing itself
    assert tree(out) == prepared and other.directory is not None
    other.close()
    resumed.release(failed=False)
    resumed.close()


def test_the_checkpoint_counts_by_its_content(tmp_path):
    path = tmp_path / "model.ckpt"
    path.write_bytes(b"weights one")
    first = content_digest(path)
    assert content_digest(tmp_path / "." / "model.ckpt") == first  # cached, the same file
    path.write_bytes(b"weights two")  # new weights saved at the same path
    os.utime(path, ns=(1, 1))
    assert content_digest(path) != first


def test_a_resumed_run_predicts_the_batches_of_an_uninterrupted_one():
    names = [f"{index}" for index in range(11)]
    assert scheduled_indices(names, frozenset(names[:6]), 1, 0, 4) == [4, 5, 6, 7, 8, 9, 10]  # [4-7] and [8-10] as before
    assert scheduled_indices(names, frozenset(names[:8]), 1, 0, 4) == [8, 9, 10]
    assert scheduled_indices(names, frozenset(names), 1, 0, 4) == []
    assert scheduled_indices(names, frozenset({"0", "2"}), 2, 0, 2) == [4, 6, 8, 10]  # rank 0: [0 2] done


# -- what lands in text files -------------------------------------------------------------------------
def test_csv_cells_a_spreadsheet_would_run_are_guarded_and_read_back_exactly():
    names = ["=HYPERLINK(x).png", "+1.png", "-2.png", "@sum.png", "'quoted.png", "plain.png"]
    text = csv_text([ImageResult(name, npy=f"{name[:-4]}_anomaly.npy", score=-1.5) for name in names])
    cells = [row[0] for row in csv.reader(io.StringIO(text))][1:]
    assert cells == ["'=HYPERLINK(x).png", "'+1.png", "'-2.png", "'@sum.png", "''quoted.png", "plain.png"]
    assert next(csv.DictReader(io.StringIO(text)))["score"] == "-1.5"  # numbers stay numbers
    assert [row["image"] for row in parse_results(text)] == names


def test_report_links_are_relative_and_url_encoded_whatever_the_name():
    row = ImageResult("javascript:alert(1);x.png", npy="javascript:alert(1);x_anomaly.npy",
                      png="a #1?_anomaly.png", score=1.0, pred_score=0.5)
    from anomalib_folder_ext.outputs.report import ReportItem

    page = html_text("t", {}, [row], [ReportItem(row, None, None)])
    hrefs = re.findall(r'href="([^"]*)"', page)
    assert './javascript%3Aalert%281%29%3Bx_anomaly.npy' in hrefs and "./a%20%231%3F_anomaly.png" in hrefs
    assert all(href.startswith(("./", "../")) for href in hrefs)
    assert file_href("../batch_01/report.html") == "../batch_01/report.html"


# -- split ------------------------------------------------------------------------------------------
def test_a_batches_csv_that_is_not_a_plan_is_one_line_naming_it(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    Image.new("RGB", (8, 8)).save(source / "a.png")
    for content, words in ((b"\xff\xfe not text", "not UTF-8"), (b"name,size\na.png,3\n", "columns are not image,batch"),
                           (b"image,batch\n../../etc/x,batch_01\n", "line 2 is not a split plan row"),
                           (b"image,batch\na.png,../up\n", "line 2 is not a split plan row")):
        root = tmp_path / "root"
        root.mkdir(exist_ok=True)
        (root / "batches.csv").write_bytes(content)
        with pytest.raises(split.SplitError, match=rf"batches.csv: .*{re.escape(words)}"):
            split.split_folder(source, root, 10)
    (root / "batches.csv").unlink()
    (root / "configs").mkdir()
    (root / "configs" / "batch_01.yaml").write_text("the user's")
    with pytest.raises(split.SplitError, match="batch_01.yaml: not made by this split"):
        split.split_folder(source, root, 10)
    assert (root / "configs" / "batch_01.yaml").read_text() == "the user's"


def test_a_move_to_another_file_system_killed_after_its_copy_is_finished_by_a_rerun(tmp_path, monkeypatch):
    source, root = tmp_path / "src", tmp_path / "root"
    source.mkdir()
    for name in ("a.png", "b.png"):
        Image.new("RGB", (8, 8), (len(name), 0, 0)).save(source / name)
    originals = {name: (source / name).read_bytes() for name in ("a.png", "b.png")}
    real_rename, real_unlink = os.rename, os.unlink

    def cross_device(src, dst, **kwargs):
        if Path(src).parent == source:
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        return real_rename(src, dst, **kwargs)

    def killed(path, **kwargs):
        if Path(path).parent == source:
            raise KeyboardInterrupt  # the kill between the copy and the source's deletion
        return real_unlink(path, **kwargs)

    monkeypatch.setattr(os, "rename", cross_device)
    monkeypatch.setattr(os, "unlink", killed)
    with pytest.raises(KeyboardInterrupt):
        split.split_folder(source, root, 10, mode="move")
    monkeypatch.setattr(os, "unlink", real_unlink)
    assert (root / "batch_01" / "a.png").read_bytes() == originals["a.png"] and (source / "a.png").exists()
    (root / "batch_01" / temporary_name("b.png")).write_bytes(b"half a copy")  # another kill, mid-file
    result = split.split_folder(source, root, 10, mode="move")
    assert result.batches == {"batch_01": 2}
    assert {name: (root / "batch_01" / name).read_bytes() for name in originals} == originals
    assert sorted(p.name for p in (root / "batch_01").iterdir()) == ["a.png", "b.png"] and not list(source.iterdir())
    assert split.split_folder(source, root, 10, mode="move").placed == 0


# -- numbers and unusual pixels -------------------------------------------------------------------------
def test_numbers_must_be_finite_and_vmin_vmax_need_fixed(capsys):
    from anomalib_folder_ext.cli.command import main

    base = ["predict", "--model_path", "m.ckpt", "--folder_path", "x"]
    for extra, words in ((["--normalization", "fixed", "--vmin=-inf", "--vmax", "1"], "expected a finite number"),
                         (["--normalization", "fixed", "--vmin", "0", "--vmax", "nan"], "expected a finite number"),
                         (["--vmin", "0", "--vmax", "1"], "--vmin and --vmax apply only to --normalization fixed"),
                         (["--overlay_alpha", "nan"], "expected a finite number")):
        with pytest.raises(SystemExit) as stop:
            main(base + extra)
        assert stop.value.code == 2 and words in capsys.readouterr().err


def test_32_bit_images_are_scaled_by_their_own_range_and_say_so(tmp_path):
    wide = (np.arange(64).reshape(8, 8) * 100_000).astype(np.int32)
    Image.fromarray(wide).save(tmp_path / "i32.tif")
    pixels, notes = decode_image(tmp_path / "i32.tif")
    assert notes == ["32-bit integer scaled from its own range 0..6.3e+06 to 8 bits"]
    assert pixels[0, 0, 0] == 0 and pixels[7, 7, 0] == 255 and len(np.unique(pixels)) == 64
    Image.fromarray(np.linspace(0, 1, 64).reshape(8, 8).astype(np.float32)).save(tmp_path / "f32.tif")
    pixels, notes = decode_image(tmp_path / "f32.tif")
    assert notes == ["32-bit float scaled from its own range 0..1 to 8 bits"] and pixels.max() == 255
    assert math.isclose(pixels[..., 1].mean(), 127.5, abs_tol=1)
