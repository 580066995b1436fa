"""FolderWatch alone (no model): which files of a watched folder are taken, and when.

Every case runs twice: with file events (inotify on Linux, the default) and with polling (``poll=0.05``,
what a network share gets), where a file is complete once its size and mtime stay the same ``settle_s``.
Timeouts are generous (a loaded 2-core machine); only the ``max_wait_s`` check times a lower bound.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from anomalib_folder_ext.images.watch import FolderWatch, Ready
from anomalib_folder_ext.outputs.journal import file_stamp

SETTLE_S = 0.3  # polling: a file is complete once unchanged this long
PATIENCE_S = 5.0  # the longest a test waits for something that should come


@pytest.fixture(params=["events", "poll"])
def mode(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "line"
    path.mkdir()
    return path


@pytest.fixture
def watches():
    """Starts FolderWatches for a test and stops them all after it (also when it fails)."""
    started: list[FolderWatch] = []

    def start(folder: Path, mode: str, done=None, **options) -> FolderWatch:
        options.setdefault("settle_s", SETTLE_S)
        watch = FolderWatch(folder, ["png", "jpg"], poll=0.05 if mode == "poll" else None, **options)
        watch.start(done)
        started.append(watch)
        return watch

    yield start
    for watch in started:
        watch.stop()


def take_all(watch: FolderWatch, seconds: float, until=None) -> list[Ready]:
    """Everything the watch hands over within ``seconds`` (sooner once ``until(taken)`` holds)."""
    taken: list[Ready] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        taken += watch.take(limit=16, max_wait_s=0.0, wait_s=0.05)
        if until is not None and until(taken):
            break
    return taken


def names(taken: list[Ready]) -> list[str]:
    return [ready.name for ready in taken]


def test_a_file_written_and_closed_is_taken(folder, mode, watches):
    watch = watches(folder, mode)
    (folder / "a.png").write_bytes(b"a whole image" * 100)
    taken = take_all(watch, PATIENCE_S, until=bool)
    assert names(taken) == ["a.png"] and not taken[0].timed_out


def test_a_file_renamed_in_from_a_dotfile_is_taken_at_once(folder, mode, watches):
    watch = watches(folder, mode)
    (folder / ".a.png.tmp").write_bytes(b"written under a hidden name" * 100)
    time.sleep(0.3)  # the hidden file is seen (and ignored) first, as a camera's temporary file is
    start = time.monotonic()
    os.rename(folder / ".a.png.tmp", folder / "a.png")
    taken = take_all(watch, PATIENCE_S, until=bool)
    elapsed = time.monotonic() - start
    assert names(taken) == ["a.png"] and not taken[0].timed_out
    # a rename is atomic: no waiting for a close (events) nor for settle_s (polling sees the move)
    assert elapsed < 1.0 if mode == "events" else elapsed < SETTLE_S + 1.5, elapsed
    assert watch.ignored == 0  # a hidden file is no image, and no "ignored" one either


def test_a_file_moved_in_from_another_folder_is_taken(tmp_path, folder, mode, watches):
    watch = watches(folder, mode)
    elsewhere = tmp_path / "camera_buffer"
    elsewhere.mkdir()
    (elsewhere / "b.png").write_bytes(b"whole before it moves" * 100)
    os.rename(elsewhere / "b.png", folder / "b.png")
    taken = take_all(watch, PATIENCE_S, until=bool)
    assert names(taken) == ["b.png"] and not taken[0].timed_out


def test_a_file_being_written_is_not_taken_before_it_is_complete(folder, mode, watches):
    watch = watches(folder, mode)
    early: list[Ready] = []
    with (folder / "slow.png").open("wb") as handle:
        start = time.monotonic()
        while time.monotonic() - start < 0.5:
            handle.write(b"x" * 64)
            handle.flush()
            early += watch.take(limit=16, max_wait_s=0.0, wait_s=0.05)
        early += watch.take(limit=16, max_wait_s=0.0, wait_s=0.05)  # still open (events), just written (poll)
    assert early == []
    closed = time.monotonic()
    taken = take_all(watch, PATIENCE_S, until=bool)
    assert names(taken) == ["slow.png"] and not taken[0].timed_out
    if mode == "poll":  # complete once its stamp held still for settle_s
        assert time.monotonic() - closed >= SETTLE_S - 0.1


def test_a_file_that_never_completes_times_out(folder, mode, watches):
    watch = watches(folder, mode, complete_timeout_s=0.5)
    taken: list[Ready] = []
    with (folder / "stuck.png").open("wb") as handle:
        start = time.monotonic()
        while time.monotonic() - start < 2.5 and not taken:
            handle.write(b"x")  # a trickle: a stalled transfer that never finishes in time
            handle.flush()
            taken += watch.take(limit=16, max_wait_s=0.0, wait_s=0.05)
        timed_out_after = time.monotonic() - start
    assert [(ready.name, ready.timed_out) for ready in taken] == [("stuck.png", True)], taken
    assert timed_out_after >= 0.45


def test_a_file_written_for_longer_than_the_timeout_is_taken_once_complete(folder, mode, watches):
    watch = watches(folder, mode, complete_timeout_s=0.5)
    taken: list[Ready] = []
    with (folder / "big.png").open("wb") as handle:
        start = time.monotonic()
        while time.monotonic() - start < 1.2:  # a large file over a slow link: longer than the timeout
            handle.write(b"x" * 16)
            handle.flush()
            taken += watch.take(limit=16, max_wait_s=0.0, wait_s=0.05)
    later = take_all(watch, 3.0, until=lambda found: any(not ready.timed_out for ready in found))
    assert any(ready.timed_out for ready in taken), (taken, later)  # the failed row while it was written
    assert [(ready.name, ready.timed_out) for ready in later] == [("big.png", False)], (taken, later)


def test_a_file_held_open_past_the_timeout_is_taken_when_closed(folder, mode, watches):
    watch = watches(folder, mode, complete_timeout_s=0.5)
    handle = (folder / "held.png").open("wb")
    try:
        handle.write(b"all of it" * 100)
        handle.flush()
        held = take_all(watch, 1.2)  # events: a timed-out report; polling: complete (unchanged; open is unseen)
    finally:
        handle.close()
    whole = any(not ready.timed_out for ready in held)  # polling: already taken whole
    later = [] if whole else take_all(watch, 3.0, until=lambda taken: any(not ready.timed_out for ready in taken))
    assert any(ready.name == "held.png" and not ready.timed_out for ready in held + later), (held, later)
    if mode == "events":
        assert [(ready.name, ready.timed_out) for ready in held] == [("held.png", True)]


def test_files_that_are_not_images_are_ignored_and_counted(folder, mode, watches):
    watch = watches(folder, mode)
    for number in range(5):
        (folder / f"log_{number}.txt").write_text("not an image")
    assert take_all(watch, 0.8) == []
    assert watch.ignored == 5


def test_a_file_deleted_before_it_is_taken_is_not_taken(folder, mode, watches):
    watch = watches(folder, mode)
    (folder / "gone.png").write_bytes(b"deleted at once" * 100)
    (folder / "gone.png").unlink()
    with (folder / "gone_too.png").open("wb") as handle:  # deleted while still being written
        handle.write(b"x" * 100)
        handle.flush()
        os.unlink(folder / "gone_too.png")
    time.sleep(0.3)
    assert take_all(watch, 1.0) == []
    assert watch.waiting == 0


def test_an_unchanged_file_present_at_start_is_skipped(folder, mode, watches):
    for name in ("a.png", "b.png", "c.png"):
        (folder / name).write_bytes(name.encode() * 100)
    done_a = file_stamp(folder / "a.png")
    size_b, mtime_b, *_ = file_stamp(folder / "b.png")
    watch = watches(folder, mode, done={"a.png": done_a, "b.png": (size_b + 1, mtime_b)})  # b changed since
    taken = take_all(watch, PATIENCE_S, until=lambda taken: len(taken) >= 2)
    taken += take_all(watch, 0.5)
    assert sorted(names(taken)) == ["b.png", "c.png"]
    assert not any(ready.timed_out for ready in taken)


def test_the_folder_removed_ends_the_takes(folder, mode, watches):
    watch = watches(folder, mode)
    (folder / "a.png").write_bytes(b"a" * 100)
    assert names(take_all(watch, PATIENCE_S, until=bool)) == ["a.png"]
    shutil.rmtree(folder)
    start = time.monotonic()
    taken = watch.take(limit=4, max_wait_s=0.1, wait_s=PATIENCE_S)
    assert taken == [] and watch.gone
    assert time.monotonic() - start < PATIENCE_S - 1.0  # told, not waited out
    assert watch.take(limit=4, max_wait_s=0.1, wait_s=0.5) == []


def test_take_hands_over_at_most_limit_and_the_rest_later(folder, mode, watches):
    expected = [f"img_{number:02d}.png" for number in range(10)]
    for name in expected:
        (folder / name).write_bytes(name.encode() * 100)
    watch = watches(folder, mode)
    time.sleep(SETTLE_S + 0.3)  # every file stable: all ten ready at the first take
    sizes, taken = [], []
    while len(taken) < 10:
        batch = watch.take(limit=4, max_wait_s=0.3, wait_s=PATIENCE_S)
        assert batch, f"only {names(taken)} taken"
        sizes.append(len(batch))
        taken += batch
    assert sizes == [4, 4, 2]
    assert sorted(names(taken)) == expected  # each once
    assert take_all(watch, 0.3) == []


def test_one_ready_file_waits_max_wait_for_company_then_goes_alone(folder, mode, watches):
    watch = watches(folder, mode)
    (folder / ".one.png.tmp").write_bytes(b"one" * 100)
    time.sleep(0.3)
    start = time.monotonic()
    os.rename(folder / ".one.png.tmp", folder / "one.png")
    batch = watch.take(limit=4, max_wait_s=0.3, wait_s=PATIENCE_S)
    elapsed = time.monotonic() - start
    assert names(batch) == ["one.png"]
    assert elapsed >= 0.25, elapsed  # held max_wait_s for more to fill the batch
    assert elapsed < 0.3 + (1.0 if mode == "events" else SETTLE_S + 1.0), elapsed
