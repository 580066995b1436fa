"""Rotation: which output dir a watch writes into, and what earlier periods already predicted."""

from __future__ import annotations

import time

from anomalib_folder_ext.outputs.journal import Journal
from anomalib_folder_ext.outputs.owned import OwnedDir
from anomalib_folder_ext.outputs.summary import ImageResult
from anomalib_folder_ext.run.watch import done_elsewhere, next_period


def _rows(directory, *names):
    journal = Journal(OwnedDir(directory, create=True), 0, {})
    journal.append([ImageResult(name, source=(index, 0, 0, 0)) for index, name in enumerate(names)])
    journal.close()


def test_a_period_of_images_fills_up_then_the_next_part_starts(tmp_path):
    assert next_period(tmp_path, "3") == next_period(tmp_path, "3")  # nothing there: part_0001, 3 images
    assert (next_period(tmp_path, "3").name, next_period(tmp_path, "3").images) == ("part_0001", 3)
    _rows(tmp_path / "part_0001", "a.png", "b.png")
    assert (next_period(tmp_path, "3").name, next_period(tmp_path, "3").images) == ("part_0001", 1)  # a restart: the rest
    _rows(tmp_path / "part_0001", "c.png")
    assert (next_period(tmp_path, "3").name, next_period(tmp_path, "3").images) == ("part_0002", 3)
    assert next_period(tmp_path, "3").ended(3) and not next_period(tmp_path, "3").ended(2)


def test_periods_by_the_clock_end_on_the_hour_and_at_midnight():
    evening = time.mktime((2026, 12, 31, 23, 30, 0, 0, 0, -1))
    hourly, daily = next_period(None, "hourly", evening), next_period(None, "daily", evening)
    assert (hourly.name, daily.name) == ("2026-12-31_23", "2026-12-31")
    assert time.localtime(hourly.ends_at)[:4] == (2027, 1, 1, 0) == time.localtime(daily.ends_at)[:4]
    assert not hourly.ended(10_000)  # a clock's period ignores how many images it took


def test_what_other_periods_predicted_is_done_with_its_stamp(tmp_path):
    _rows(tmp_path / "2026-12-07_13", "a.png")
    _rows(tmp_path / "2026-12-07_14", "b.png")
    (tmp_path / "notes").mkdir()  # not an output dir: ignored
    assert done_elsewhere(tmp_path, "2026-12-07_14") == {"a.png": (0, 0, 0, 0)}
