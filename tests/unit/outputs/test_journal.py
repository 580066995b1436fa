"""The journal and the combined view, without a model: exact rows back, torn lines, settings, finished folders."""

from __future__ import annotations

import csv
import io
import math
import os
import time

import pytest

from anomalib_folder_ext.outputs import journal
from anomalib_folder_ext.outputs.reuse import finished_run, reusable_rows
from anomalib_folder_ext.outputs.owned import OwnedDir
from anomalib_folder_ext.outputs.runplan import OutputNames
from anomalib_folder_ext.outputs.summary import (
    BatchReport, ImageResult, combined_csv_text, combined_summary_text, csv_text, row_from_csv,
)

SETTINGS = {"checkpoint": "/m.ckpt", "precision": "32-true", "npy": True, "png": "jet"}


def row(name: str, score: float, status: str = "ok", source=(10, 20), **extra) -> ImageResult:
    stem = name.rsplit(".", 1)[0]
    files = {"npy": f"{stem}_anomaly.npy", "png": f"{stem}_anomaly.png"} if status == "ok" else {}
    return ImageResult(name, status=status, score=score, raw_min=-0.1234567891, raw_mean=1 / 3,
                       norm_mean=0.25, pred_score=0.5, pred_label=score > 1 if status == "ok" else None, width=5, height=4,
                       source=source, **files, **extra)


def touch_outputs(out, rows):
    for item in rows:
        for name in (item.npy, item.png):
            if name:
                (out / name).write_bytes(b"x")


def inputs_of(folder, rows):
    """The input images the rows describe, with the size and modification time the rows record."""
    folder.mkdir(exist_ok=True)
    stamped = []
    for item in rows:
        path = folder / item.image
        path.write_bytes(b"image " + item.image.encode())
        stamp = journal.file_stamp(path)
        stamped.append(ImageResult(**{**item.__dict__, "source": stamp}))
    return stamped


def test_rows_come_back_exactly_and_a_torn_last_line_is_ignored(tmp_path):
    rows = [row("a.png", 0.5), row("b.png", math.nan, status="failed", error="OSError: bad"), row("c.png", 2.0)]
    log = journal.Journal(OwnedDir(tmp_path), rank=0, settings=SETTINGS)
    log.append(rows[:2])
    log.append(rows[2:])
    log.close()
    with (tmp_path / ".journal" / "rank0.jsonl").open("a") as handle:
        handle.write('{"image":"d.png","status":"o')  # a kill in the middle of a line
    state = journal.read_journal(tmp_path)
    assert list(state.rows) == ["a.png", "b.png", "c.png"]
    assert state.rows["a.png"] == rows[0] and state.rows["c.png"].raw_min == -0.1234567891  # exact floats
    assert state.rows["b.png"].status == "failed" and math.isnan(state.rows["b.png"].score)

    again = journal.Journal(OwnedDir(tmp_path), rank=0, settings=SETTINGS)  # the resumed run appends after the torn line
    again.append([row("d.png", 0.7)])
    again.close()
    assert list(journal.read_journal(tmp_path).rows) == ["a.png", "b.png", "c.png", "d.png"]


def test_only_ok_rows_whose_files_exist_count_as_done(tmp_path):
    out, folder = tmp_path / "out", tmp_path / "in"
    out.mkdir()
    rows = inputs_of(folder, [row("a.png", 0.5), row("b.png", math.nan, status="failed", error="x"), row("c.png", 2.0)])
    log = journal.Journal(OwnedDir(out), rank=1, settings=SETTINGS)
    log.append(rows)
    log.close()
    touch_outputs(out, rows)
    (out / "c_anomaly.png").unlink()
    plan = OutputNames.for_images(["a.png", "b.png", "c.png"])
    reuse = reusable_rows(journal.read_journal(out), OwnedDir(out), plan, folder)
    assert list(reuse.complete) == ["a.png"]  # b failed (retried), c lost a file
    assert reuse.untrusted == ["c.png: its png file c_anomaly.png is missing (or not a plain file)"]


def test_resuming_with_other_settings_is_refused_naming_the_setting(tmp_path):
    log = journal.Journal(OwnedDir(tmp_path), rank=0, settings=SETTINGS)
    log.append([row("a.png", 0.5)])
    log.close()
    state = journal.read_journal(tmp_path)
    state.check(SETTINGS)
    with pytest.raises(journal.JournalMismatchError, match=r"used png 'jet', this one 'viridis'"):
        state.check({**SETTINGS, "png": "viridis"})
    with pytest.raises(journal.JournalMismatchError, match=r"used other weights \(checkpoint content sha256"):
        state.check({**SETTINGS, "checkpoint": "0123456789abcdef"})


def test_a_folder_counts_as_finished_only_for_the_same_images_settings_and_files(tmp_path):
    out, folder = tmp_path / "out", tmp_path / "in"
    out.mkdir()
    directory = OwnedDir(out)
    rows = inputs_of(folder, [row("a.png", 0.5), row("b.png", 1.5)])
    names = [item.image for item in rows]
    plan = OutputNames.for_images(names)
    (out / "results.csv").write_text(csv_text(rows))
    touch_outputs(out, rows)
    log = journal.Journal(directory, rank=0, settings=SETTINGS)
    log.append(rows)
    log.close()
    assert finished_run(directory, SETTINGS, plan, folder) is None  # no finished record yet
    journal.write_finished(directory, {"settings": SETTINGS, "images": journal.names_digest(names), "loop_s": 1.0})
    assert finished_run(directory, SETTINGS, plan, folder)["loop_s"] == 1.0
    (folder / "c.png").write_bytes(b"new")
    assert finished_run(directory, SETTINGS, OutputNames.for_images([*names, "c.png"]), folder) is None  # a new image
    assert finished_run(directory, {**SETTINGS, "precision": "bf16-mixed"}, plan, folder) is None
    (out / "b_anomaly.npy").rename(out / "kept.npy")
    assert finished_run(directory, SETTINGS, plan, folder) is None  # a file went missing: not done
    (out / "kept.npy").rename(out / "b_anomaly.npy")
    assert finished_run(directory, SETTINGS, plan, folder) is not None
    # Replaced by another file of the same size with its time kept: as rsync -t does (a new file renamed over
    # it: another inode) and as cp -p does (written in place: another change time, which moves in clock ticks).
    size, mtime_ns = rows[0].source[:2]
    (folder / "b.tmp").write_bytes(b"y" * journal.file_stamp(folder / "b.png")[0])
    os.utime(folder / "b.tmp", ns=(mtime_ns, rows[1].source[1]))
    (folder / "b.tmp").replace(folder / "b.png")
    assert journal.file_stamp(folder / "b.png")[:2] == rows[1].source[:2]
    assert finished_run(directory, SETTINGS, plan, folder) is None
    rows[1] = ImageResult(**{**rows[1].__dict__, "source": journal.file_stamp(folder / "b.png")})
    journal.Journal(directory, rank=0, settings=SETTINGS).append([rows[1]])
    assert finished_run(directory, SETTINGS, plan, folder) is not None  # b.png's new row
    time.sleep(0.05)
    (folder / "a.png").write_bytes(b"x" * size)
    os.utime(folder / "a.png", ns=(mtime_ns, mtime_ns))
    assert journal.file_stamp(folder / "a.png")[:2] == (size, mtime_ns)
    assert finished_run(directory, SETTINGS, plan, folder) is None
    journal.mark_unfinished(directory)
    assert journal.read_finished(directory) is None


def test_results_csv_rows_read_back_write_the_same_csv():
    rows = [row("a.png", 0.5), row("b.png", math.nan, status="failed", error="OSError: bad"), row("c.png", 2.0)]
    text = csv_text(rows)
    again = [row_from_csv(values) for values in csv.DictReader(io.StringIO(text))]
    assert csv_text(again) == text and again[2].pred_label is True and again[1].pred_label is None


def test_combined_view_has_every_row_with_its_batch_and_the_top_of_all_batches():
    first = BatchReport("batch_01", "inference_results_batch_01", [row("a.png", 0.5), row("b.png", 3.0)], "ran", 2, 1.0, 0.2)
    second = BatchReport("batch_02", "inference_results_batch_02",
                         [row("c.png", 1.5), row("d.png", math.nan, status="failed", error="OSError: bad")],
                         "done earlier", 2, 4.0)
    parsed = list(csv.DictReader(io.StringIO(combined_csv_text([first, second]))))
    assert [(r["batch"], r["image"]) for r in parsed] == [
        ("batch_01", "a.png"), ("batch_01", "b.png"), ("batch_02", "c.png"), ("batch_02", "d.png")]
    assert parsed[0]["npy"] == "inference_results_batch_01/a_anomaly.npy" and parsed[3]["npy"] == ""

    text = combined_summary_text({"checkpoint": "/m.ckpt"}, [first, second])
    lines = text.splitlines()
    batch_01 = next(line for line in lines if line.strip().startswith("batch_01"))
    assert batch_01.split()[1:4] == ["2", "2", "0"] and batch_01.rstrip().endswith("ran")
    assert "2.00" in batch_01  # 2 images in 1.0 s
    assert next(line for line in lines if line.strip().startswith("batch_02")).rstrip().endswith("done earlier")
    top = lines.index(next(line for line in lines if line.startswith("Most anomalous")))
    assert lines[top + 1].split()[-1] == "batch_01/b.png" and lines[top + 2].split()[-1] == "batch_02/c.png"
    assert "batch_02/d.png: OSError: bad" in text and "4 (3 ok, 1 failed) in 2 batch folders" in text
