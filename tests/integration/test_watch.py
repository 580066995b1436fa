"""``anomalib-folder watch`` end to end: real files land in a real watched folder, the real console command
(a subprocess of this venv) predicts them, and it is stopped as an operator or a service manager would.

Each start loads the model (10-20 s on 2 cores), so one long-running watch (``line``) serves several
tests in turn: images one at a time and in a burst, bad input, the sinks, then SIGTERM and a comparison
with ``anomalib-folder predict``. Files land as a camera publishes them: written under a hidden name in
the folder, then renamed to their own.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import subprocess
import threading
import time
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from conftest import REPO, command_env, textured_image

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

START_S = 180  # the longest a watch may take to load the model and say "watching" (a loaded machine)
ROWS_S = 120  # the longest a test waits for rows it expects
STOP_S = 60  # the longest a signalled watch may take to finish and exit
POLL_S = 0.05
FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".bmp": "BMP"}


# -- helpers ---------------------------------------------------------------------------------------------

class WatchProcess:
    """``anomalib-folder watch`` (or any command) in its own process; stdout read as it comes, stderr to a file."""

    def __init__(self, args: list[str], cwd: Path, log: Path) -> None:
        self.args, self.log = args, log
        self._stderr = log.open("w")
        self.process = subprocess.Popen(args, cwd=cwd, env=command_env(), stdin=subprocess.DEVNULL,
                                        stdout=subprocess.PIPE, stderr=self._stderr, text=True, bufsize=1)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def stdout(self) -> str:
        return "".join(self.lines)

    @property
    def stderr(self) -> str:
        if not self._stderr.closed:
            self._stderr.flush()
        return self.log.read_text(errors="replace")

    def console(self, tail: int = 4000) -> str:
        return f"--- stdout ---\n{self.stdout[-tail:]}\n--- stderr ---\n{self.stderr[-tail:]}"

    def alive(self) -> bool:
        return self.process.poll() is None

    def wait_for(self, text: str, timeout: float = START_S) -> str:
        """The first line (stdout or stderr) holding ``text``; fails when the command ends or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in [*self.lines, *self.stderr.splitlines()]:
                if text in line:
                    return line
            if not self.alive():
                self._reader.join(timeout=5)
                pytest.fail(f"exited {self.process.returncode} before saying {text!r}\n{self.console()}")
            time.sleep(POLL_S)
        pytest.fail(f"no line with {text!r} after {timeout:.0f} s\n{self.console()}")

    def signal(self, signum: int, timeout: float = STOP_S) -> int:
        """Sends ``signum``; the exit status, which must come within ``timeout`` seconds."""
        start = time.monotonic()
        self.process.send_signal(signum)
        try:
            status = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"still running {timeout:.0f} s after signal {signum}\n{self.console()}")
        self._reader.join(timeout=10)
        self.stop_s = time.monotonic() - start
        return status

    def wait(self, timeout: float = STOP_S) -> int:
        try:
            status = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"still running after {timeout:.0f} s\n{self.console()}")
        self._reader.join(timeout=10)
        return status

    def kill(self) -> None:
        if self.alive():
            self.process.kill()
            self.process.wait(timeout=30)

    def close(self) -> None:
        self.kill()
        self._reader.join(timeout=10)
        self._stderr.close()


def watch_args(folder: Path, out: Path, checkpoint: Path, *extra: str) -> list[str]:
    return ["anomalib-folder", "watch", str(folder), "--model_path", str(checkpoint), "--output_dir", str(out),
            "--summary_every", "1", *extra]


def image_bytes(name: str, seed: int, size: tuple[int, int] = (128, 128)) -> bytes:
    """A textured image of ``name``'s format, encoded."""
    buffer = io.BytesIO()
    Image.fromarray(textured_image(np.random.default_rng(seed), size[1], size[0])).save(
        buffer, format=FORMATS[Path(name).suffix.lower()])
    return buffer.getvalue()


def drop(folder: Path, name: str, seed: int = 0, content: bytes | None = None) -> None:
    """Lands ``name`` as a camera does: written as a hidden ``.name.tmp`` in the folder, then renamed."""
    hidden = folder / f".{name}.tmp"
    hidden.write_bytes(image_bytes(name, seed) if content is None else content)
    os.rename(hidden, folder / name)


def stage(where: Path, names: list[str], seed: int) -> dict[str, Path]:
    """Images written whole outside the folder, to be moved in at once."""
    where.mkdir(parents=True, exist_ok=True)
    staged = {}
    for number, name in enumerate(names):
        staged[name] = where / name
        staged[name].write_bytes(image_bytes(name, seed + number))
    return staged


def read_rows(out: Path) -> list[dict[str, str]]:
    """results.csv's complete rows as they are now (a watch appends to it)."""
    try:
        with (out / "results.csv").open(newline="") as handle:
            return [row for row in csv.DictReader(handle) if None not in row.values()]
    except FileNotFoundError:
        return []


def wait_rows(out: Path, n: int, timeout: float = ROWS_S, watch: WatchProcess | None = None,
              names: set[str] | None = None, distinct: bool = True) -> list[dict[str, str]]:
    """results.csv's rows once they name at least ``n`` images (of ``names``, when given; ``distinct=False``:
    at least ``n`` rows, an image predicted again counting again)."""
    deadline = time.monotonic() + timeout
    while True:
        rows = read_rows(out)
        counted = [row["image"] for row in rows if names is None or row["image"] in names]
        if len(set(counted) if distinct else counted) >= n:
            return rows
        if watch is not None and not watch.alive():
            pytest.fail(f"the watch exited ({watch.process.returncode}) with {len(counted)} of {n} rows\n"
                        f"{watch.console()}")
        if time.monotonic() > deadline:
            pytest.fail(f"{len(counted)} of {n} rows after {timeout:.0f} s: {[row['image'] for row in rows]}"
                        + (f"\n{watch.console()}" if watch else ""))
        time.sleep(POLL_S)


def wait_until(condition, timeout: float = ROWS_S, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout:.0f} s: {what}")
        time.sleep(POLL_S)


def rows_by_image(rows: list[dict[str, str]]) -> dict[str, list[dict[str, str]]]:
    found: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        found.setdefault(row["image"], []).append(row)
    return found


def journal_lines(out: Path) -> tuple[int, int]:
    """(image rows, settings headers) in the journal's rank files."""
    images = headers = 0
    for path in sorted((out / ".journal").glob("rank*.jsonl")):
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and "settings" in record:
                headers += 1
            else:
                images += 1
    return images, headers


def sort_group(row: dict[str, str]) -> str:
    if row["status"] != "ok":
        return "failed"
    return row["decision"] if row["decision"] in ("ok", "defect", "uncertain") else "undecided"


class Collector(BaseHTTPRequestHandler):
    """An endpoint a line's MES would be: every JSON body posted to it, kept."""

    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with self.server.lock:
            self.server.records.append(json.loads(body))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def endpoint():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    server.records, server.lock = [], threading.Lock()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


# -- one watch, several checks --------------------------------------------------------------------------

class Line:
    """The long-running watch the first tests share, and what they dropped into it."""

    def __init__(self, root: Path, checkpoint: Path, endpoint: ThreadingHTTPServer) -> None:
        self.root, self.checkpoint, self.endpoint = root, checkpoint, endpoint
        self.folder, self.out, self.sorted = root / "line", root / "results", root / "sorted"
        self.folder.mkdir()
        port = endpoint.server_address[1]
        self.watch = WatchProcess(
            watch_args(self.folder, self.out, checkpoint, "--complete_timeout_s", "3",
                       "--post", f"http://127.0.0.1:{port}/", "--sort_into", str(self.sorted)),
            cwd=root, log=root / "line.stderr")
        try:
            self.started = self.watch.wait_for("watching")
        except BaseException:
            self.watch.close()
            raise

    def records(self) -> list[dict]:
        with self.endpoint.lock:
            return list(self.endpoint.records)


@pytest.fixture(scope="module")
def line(checkpoint, endpoint, tmp_path_factory):
    line = Line(tmp_path_factory.mktemp("watch_line"), checkpoint, endpoint)
    yield line
    line.watch.close()


def test_images_landing_one_at_a_time_and_in_a_burst_get_one_row_each_while_running(line):
    assert "watching" in line.started and str(line.folder) in line.started
    singles = [f"single_{number}.png" for number in range(3)]
    for number, name in enumerate(singles):
        drop(line.folder, name, seed=100 + number)
        wait_rows(line.out, number + 1, watch=line.watch, names=set(singles))  # each answered on its own
    burst = [f"burst_{number:02d}.png" for number in range(20)]
    for number, name in enumerate(burst):
        drop(line.folder, name, seed=200 + number)
    mine = set(singles) | set(burst)
    rows = wait_rows(line.out, len(mine), watch=line.watch, names=mine)
    assert line.watch.alive()  # the rows came while it runs on

    time.sleep(1.0)  # nothing more is coming for these: no second row
    by_image = rows_by_image([row for row in read_rows(line.out) if row["image"] in mine])
    assert sorted(by_image) == sorted(mine)
    assert {name: len(found) for name, found in by_image.items() if len(found) != 1} == {}
    for name, (row,) in by_image.items():
        assert row["status"] == "ok", row
        assert row["npy"] and (line.out / row["npy"]).is_file(), row
        assert row["png"] and (line.out / row["png"]).is_file(), row
        assert np.load(line.out / row["npy"]).ndim == 2
    assert not [row for row in rows if row["image"] not in mine and row["image"].startswith(("single_", "burst_"))]


def test_bad_input_gets_its_rows_and_the_watch_goes_on(line):
    folder, out, watch = line.folder, line.out, line.watch

    truncated = image_bytes("cut.jpg", seed=300)[:200]  # the first 200 bytes of a real JPEG
    drop(folder, "cut.jpg", content=truncated)
    for number in range(200):  # a flood of files that are no images
        (folder / f"log_{number:03d}.txt").write_text(f"line {number}")
    with (folder / "deleted.png").open("wb") as handle:  # deleted before it was ever complete
        handle.write(image_bytes("deleted.png", seed=301))
        handle.flush()
        os.unlink(folder / "deleted.png")
    drop(folder, "replaced.png", seed=302)

    rows = wait_rows(out, 2, watch=watch, names={"cut.jpg", "replaced.png"})
    by_image = rows_by_image(rows)
    cut = by_image["cut.jpg"][-1]
    assert cut["status"] == "failed" and cut["error"], cut
    first = by_image["replaced.png"][0]
    assert first["status"] == "ok" and "replaced" not in first["note"], first

    # A transfer that stalls: written slowly, never closed within complete_timeout_s (3 s here).
    # Its row is written while the file stays open: a file still being written never holds back the rows.
    slow = (folder / "slow.png").open("wb")
    try:
        for _ in range(5):
            slow.write(b"\x89PNG partial")
            slow.flush()
            time.sleep(0.2)
        deadline = time.monotonic() + 45
        while "slow.png" not in {row["image"] for row in read_rows(out)} and time.monotonic() < deadline:
            assert watch.alive(), watch.console()
            time.sleep(POLL_S)
        stalled_in_time = [row for row in read_rows(out) if row["image"] == "slow.png"]
    finally:
        slow.close()  # complete now: read again (it is no image: a failed row of its own)

    drop(folder, "replaced.png", seed=303)  # new content under the same name, renamed over the old file
    rows = wait_rows(out, 2, watch=watch, names={"replaced.png"}, distinct=False)
    again = rows_by_image(rows)["replaced.png"][-1]
    assert again["status"] == "ok" and "replaced" in again["note"], again
    assert again["score"] != rows_by_image(rows)["replaced.png"][0]["score"]

    drop(folder, "good_after.png", seed=304)
    rows = wait_rows(out, 1, watch=watch, names={"good_after.png"})
    by_image = rows_by_image(rows)
    assert by_image["good_after.png"][0]["status"] == "ok"
    assert not [name for name in by_image if name.endswith(".txt")]
    assert "deleted.png" not in by_image
    assert len(by_image["cut.jpg"]) == 1
    assert watch.alive()

    stalled = by_image["slow.png"][0]  # written by now: a later batch flushed it
    assert stalled["status"] == "failed" and "complete_timeout_s" in stalled["error"], stalled
    assert stalled_in_time, "no row for slow.png within 45 s while it stayed open (complete_timeout_s 3)"


def test_each_row_is_posted_and_each_input_sorted_by_its_decision(line):
    drop(line.folder, "posted.png", seed=400)
    wait_rows(line.out, 1, watch=line.watch, names={"posted.png"})
    rows = read_rows(line.out)
    latest = {row["image"]: row for row in rows}  # the last row of each image

    def posted() -> dict[str, dict]:
        return {record["image"]: record for record in line.records()}

    wait_until(lambda: set(latest) <= set(posted()), 60, f"a record for each of {sorted(latest)}")
    records = posted()
    for name, row in latest.items():
        record = records[name]
        assert {"image", "status", "score", "decision"} <= set(record), record
        assert record["status"] == row["status"]
        if row["status"] == "ok":
            assert record["decision"] == row["decision"] and record["decision"] in ("ok", "defect", "uncertain")
            assert record["score"] == pytest.approx(float(row["score"]), abs=1e-5)

    def placed(name: str) -> list[str]:
        return sorted(group.name for group in line.sorted.iterdir() if (group / name).exists())

    wait_until(lambda: all(placed(name) == [sort_group(row)] for name, row in latest.items()), 60,
               f"each input under {line.sorted}/<its group> once")
    assert (line.sorted / sort_group(latest["posted.png"]) / "posted.png").samefile(line.folder / "posted.png")
    assert not list(line.sorted.rglob("*.txt"))


def test_sigterm_stops_after_the_images_in_flight_and_the_scores_are_predicts(line, checkpoint):
    burst = [f"last_{number}.png" for number in range(4)]
    for number, name in enumerate(burst):
        drop(line.folder, name, seed=500 + number)
    wait_rows(line.out, 1, watch=line.watch, names=set(burst))  # the others in flight, or still waiting

    status = line.watch.signal(signal.SIGTERM)
    assert status == 0, line.watch.console()
    assert line.watch.stop_s < STOP_S
    assert "SIGTERM" in line.watch.stderr
    # what got no row is said as the watch ends: the flood of text files, the image deleted while written
    assert "no row for 200 files that are not images (extensions" in line.watch.stdout, line.watch.console()
    assert "nor for 1 image deleted before it was read" in line.watch.stdout, line.watch.console()

    rows = read_rows(line.out)
    names = [row["image"] for row in rows]
    assert len(names) == len(set(names)), "results.csv: one row per image at the end"
    from anomalib_folder_ext.outputs.journal import read_journal

    journaled = read_journal(line.out).rows
    assert sorted(names) == sorted(journaled)
    assert set(burst) & set(names)
    for name in names:
        row = journaled[name]
        assert row.status != "ok" or (line.out / row.npy).is_file(), name  # what was taken is written whole
    assert (line.out / "results_summary.txt").is_file()
    assert not [name for name in names if name.endswith(".txt")] and "deleted.png" not in names

    # the same images through a batch run give the same scores
    good = sorted(name for name, row in journaled.items() if row.status == "ok")
    assert good
    again = line.root / "again"
    again.mkdir()
    for name in good:
        shutil.copy2(line.folder / name, again / name)
    out2 = line.root / "predicted"
    batch = subprocess.run(["anomalib-folder", "predict", "--folder_path", str(again), "--model_path",
                            str(checkpoint), "--output_dir", str(out2)], cwd=line.root, env=command_env(),
                           capture_output=True, text=True, timeout=300, check=False)
    assert batch.returncode == 0, batch.stderr[-3000:]
    predicted = read_journal(out2).rows
    assert sorted(predicted) == good
    for name in good:
        assert journaled[name].score == pytest.approx(predicted[name].score, abs=1e-5), name
        assert journaled[name].decision == predicted[name].decision, name

    # every row reached the endpoint by the end (the poster delivers its queue before exiting)
    assert set(names) <= {record["image"] for record in line.records()}


# -- restarts, refusals, the folder removed ---------------------------------------------------------------

def test_killed_and_restarted_a_watch_predicts_what_landed_meanwhile_once(checkpoint, tmp_path):
    folder, out = tmp_path / "line", tmp_path / "results"
    folder.mkdir()
    first_names = [f"part_{number:02d}.png" for number in range(40)]
    staged = stage(tmp_path / "staged", first_names, seed=600)
    args = watch_args(folder, out, checkpoint, "--batch_size", "4")

    watch = WatchProcess(args, cwd=tmp_path, log=tmp_path / "first.stderr")
    try:
        watch.wait_for("watching")
        for name, path in staged.items():  # forty at once
            os.rename(path, folder / name)
        wait_rows(out, 10, watch=watch)
        watch.process.send_signal(signal.SIGKILL)
        assert watch.wait(30) == -signal.SIGKILL
    finally:
        watch.close()
    done_before = len({row["image"] for row in read_rows(out)})

    later_names = [f"late_{number}.png" for number in range(5)]
    for name, path in stage(tmp_path / "staged_late", later_names, seed=700).items():  # while it is down
        os.rename(path, folder / name)

    restarted = WatchProcess(args, cwd=tmp_path, log=tmp_path / "second.stderr")
    try:
        wait_rows(out, 45, timeout=START_S + ROWS_S, watch=restarted, names=set(first_names + later_names))
        assert restarted.signal(signal.SIGTERM) == 0, restarted.console()
    finally:
        restarted.close()

    rows = read_rows(out)
    names = [row["image"] for row in rows]
    assert len(names) == 45 and sorted(set(names)) == sorted(first_names + later_names)
    from anomalib_folder_ext.outputs.journal import read_journal

    assert sorted(read_journal(out).rows) == sorted(first_names + later_names)
    assert all(row["status"] == "ok" for row in rows)
    images, headers = journal_lines(out)
    if images > 45:  # reported, not asserted: a row in flight at the kill may be redone
        warnings.warn(f"kill -9 and restart: the journal holds {images} image lines for 45 images "
                      f"({headers} settings lines; {done_before} images in results.csv at the kill)", stacklevel=1)


def test_refusals_at_start_are_one_line_and_exit_2(tmp_path):
    folder = tmp_path / "line"
    folder.mkdir()
    model = tmp_path / "model.ckpt"
    model.write_bytes(b"")  # never read: each refusal comes before the model
    cases = {
        "inside": watch_args(folder, folder / "results", model),
        "missing": watch_args(tmp_path / "no_such_folder", tmp_path / "results", model),
        "weekly": watch_args(folder, tmp_path / "results", model, "--rotate", "weekly"),
    }
    runs = {name: subprocess.Popen(args, cwd=tmp_path, env=command_env(), stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True) for name, args in cases.items()}
    done = {name: (run.wait(timeout=300), *run.communicate()) for name, run in runs.items()}

    for name, (status, stdout, stderr) in done.items():
        assert status == 2, (name, stdout, stderr)
        assert stderr.count("\n") == 1 and "Traceback" not in stderr, (name, stderr)
    assert "output_dir" in done["inside"][2] and "inside the watched folder" in done["inside"][2]
    assert "no_such_folder" in done["missing"][2]
    assert "rotate" in done["weekly"][2] and "weekly" in done["weekly"][2]
    assert not (folder / "results").exists() and not (tmp_path / "results").exists()
    assert list(folder.iterdir()) == []


def test_the_watched_folder_removed_ends_the_watch_with_exit_2_and_keeps_the_rows(checkpoint, tmp_path):
    folder, out = tmp_path / "line", tmp_path / "results"
    folder.mkdir()
    watch = WatchProcess(watch_args(folder, out, checkpoint), cwd=tmp_path, log=tmp_path / "watch.stderr")
    try:
        watch.wait_for("watching")
        for number in range(3):
            drop(folder, f"kept_{number}.png", seed=800 + number)
        wait_rows(out, 3, watch=watch)
        shutil.rmtree(folder)
        status = watch.wait(STOP_S)
    finally:
        watch.close()
    assert status == 2, watch.console()
    assert "the watched folder was removed" in watch.stderr, watch.console()
    assert "Traceback" not in watch.stderr
    assert sorted(row["image"] for row in read_rows(out)) == [f"kept_{number}.png" for number in range(3)]
    assert (out / "results_summary.txt").is_file()


def test_rotate_by_count_writes_one_output_dir_per_three_images(checkpoint, tmp_path):
    folder, out = tmp_path / "line", tmp_path / "results"
    folder.mkdir()
    names = [f"img_{number}.png" for number in range(7)]
    watch = WatchProcess(watch_args(folder, out, checkpoint, "--rotate", "3"), cwd=tmp_path,
                         log=tmp_path / "watch.stderr")
    try:
        watch.wait_for("watching")
        for number, name in enumerate(names):
            drop(folder, name, seed=900 + number)
        wait_rows(out / "part_0003", 1, timeout=START_S, watch=watch)
        assert watch.signal(signal.SIGTERM) == 0, watch.console()
    finally:
        watch.close()

    parts = sorted(path.name for path in out.iterdir() if path.is_dir() and not path.name.startswith("."))
    assert parts == ["part_0001", "part_0002", "part_0003"], parts
    counts = [len(read_rows(out / part)) for part in parts]
    assert counts == [3, 3, 1], counts
    seen = [row["image"] for part in parts for row in read_rows(out / part)]
    assert sorted(seen) == names  # each image in exactly one period
    for part in parts:
        assert (out / part / "results_summary.txt").is_file(), part


# -- the Python API and anomalib's own CLI ----------------------------------------------------------------

def test_watch_folder_in_a_thread_stops_on_its_event(checkpoint, tmp_path):
    from anomalib_folder_ext import watch_folder

    folder, out = tmp_path / "line", tmp_path / "results"
    folder.mkdir()
    stop, outcome = threading.Event(), {}

    def run() -> None:
        try:
            outcome["result"] = watch_folder(folder, checkpoint, out, stop=stop, summary_every=1)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome["error"] = exc

    thread = threading.Thread(target=run, name="watch-folder", daemon=True)
    thread.start()
    names = [f"api_{number}.png" for number in range(3)]
    try:
        for number, name in enumerate(names):
            drop(folder, name, seed=1000 + number)  # before or after the watch starts: both are taken
        deadline = time.monotonic() + START_S + ROWS_S
        while len(read_rows(out)) < 3 and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(POLL_S)
        assert "error" not in outcome, outcome.get("error")
        assert len(read_rows(out)) >= 3
    finally:
        stop.set()
        thread.join(timeout=STOP_S)
    assert not thread.is_alive()
    assert "error" not in outcome, outcome.get("error")
    result = outcome["result"]
    assert sorted(row.image for row in result.rows) == names
    assert result.images == 3 and result.failed == []
    assert result.stopped == "stopped"
    assert len(result.periods) == 1


def test_anomalib_predict_with_the_watched_datamodule_runs_the_same_watch(checkpoint, tmp_path):
    folder, out = tmp_path / "line", tmp_path / "results"
    folder.mkdir()
    config = yaml.safe_load((REPO / "configs/folder.yaml").read_text())
    config["data"]["class_path"] = "anomalib_folder_ext.data.WatchedFolderDataModule"
    config["data"]["init_args"].update(folder_path=str(folder), output_dir=str(out), summary_every=1)
    config["ckpt_path"] = str(checkpoint)
    for callback in config["trainer"]["callbacks"]:
        if callback["class_path"].endswith("AnomalyMapWriter"):
            callback["init_args"]["resume"] = True
    path = tmp_path / "watch.yaml"
    path.write_text(yaml.safe_dump(config))

    watch = WatchProcess(["anomalib", "predict", "--config", str(path)], cwd=tmp_path, log=tmp_path / "watch.stderr")
    try:
        for number in range(2):
            drop(folder, f"cli_{number}.png", seed=1100 + number)
        wait_rows(out, 2, timeout=START_S + ROWS_S, watch=watch)
        assert watch.alive()
        assert watch.signal(signal.SIGTERM) == 0, watch.console()
    finally:
        watch.close()
    rows = read_rows(out)
    assert sorted(row["image"] for row in rows) == ["cli_0.png", "cli_1.png"]
    assert all(row["status"] == "ok" for row in rows)
    assert (out / "results_summary.txt").is_file()
