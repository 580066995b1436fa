"""The watch's sinks: images sorted into one group folder each, rows posted without ever stalling the caller."""

from __future__ import annotations

import errno
import json
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from anomalib_folder_ext.errors import InputError
from anomalib_folder_ext.outputs import sinks
from anomalib_folder_ext.outputs.sinks import Poster, SortInto, row_record
from anomalib_folder_ext.outputs.summary import ImageResult


def _image(folder: Path, name: str, data: bytes = b"png") -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _placed(root: Path) -> list[str]:
    return sorted(path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file())


@pytest.fixture
def folder(tmp_path):
    folder = tmp_path / "in"
    for name in ("a.png", "b.png", "c.png", "d.png", "line1/e.png"):
        _image(folder, name)
    return folder


def test_sort_into_links_each_image_into_its_group_mirroring_sub_folders(tmp_path, folder):
    root = tmp_path / "sorted"
    sort = SortInto(root, folder)
    rows = [ImageResult("a.png", decision="ok"), ImageResult("b.png", decision="defect"),
            ImageResult("c.png", status="failed", error="unreadable"), ImageResult("d.png"),
            ImageResult("line1/e.png", decision="uncertain")]
    assert [sort.place(row) for row in rows] == [None] * 5
    assert _placed(root) == ["defect/b.png", "failed/c.png", "ok/a.png", "uncertain/line1/e.png", "undecided/d.png"]
    assert os.path.samefile(root / "ok" / "a.png", folder / "a.png")  # a hard link: no space taken
    assert (folder / "a.png").exists()


def test_sort_into_moves_with_move(tmp_path, folder):
    root = tmp_path / "sorted"
    assert SortInto(root, folder, move=True).place(ImageResult("line1/e.png", decision="defect")) is None
    assert _placed(root) == ["defect/line1/e.png"]
    assert not (folder / "line1" / "e.png").exists()


def test_an_image_predicted_again_moves_to_its_new_group(tmp_path, folder):
    root = tmp_path / "sorted"
    sort = SortInto(root, folder)
    assert sort.place(ImageResult("line1/e.png", decision="defect")) is None
    assert sort.place(ImageResult("line1/e.png", decision="defect")) is None  # the same again: still one name
    _image(folder, "line1/e.png", b"replaced")  # a new part under the same name
    assert sort.place(ImageResult("line1/e.png", decision="ok")) is None
    assert _placed(root) == ["ok/line1/e.png"]
    assert (root / "ok" / "line1" / "e.png").read_bytes() == b"replaced"
    assert not [path for path in root.rglob(".*")]  # no temporary name left behind


def test_a_missing_input_is_a_problem_line_not_an_exception(tmp_path, folder):
    problem = SortInto(tmp_path / "sorted", folder).place(ImageResult("gone.png", decision="ok"))
    assert problem.startswith("sort_into: ") and "gone.png" in problem and "\n" not in problem
    assert SortInto(tmp_path / "sorted", folder).place(ImageResult("../a.png", decision="ok")).startswith("sort_into: ")


def test_a_hard_link_refused_falls_back_to_a_copy(tmp_path, folder, monkeypatch):
    def no_link(*args, **kwargs):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_link)
    root = tmp_path / "sorted"
    assert SortInto(root, folder).place(ImageResult("a.png", decision="defect")) is None
    assert (root / "defect" / "a.png").read_bytes() == b"png"
    assert not os.path.samefile(root / "defect" / "a.png", folder / "a.png")


def test_a_link_out_of_the_root_is_never_removed_through(tmp_path, folder):
    root, elsewhere = tmp_path / "sorted", tmp_path / "elsewhere"
    _image(elsewhere, "line1/e.png", b"not ours")
    (root / "defect").mkdir(parents=True)
    (root / "defect" / "line1").symlink_to(elsewhere / "line1")
    problem = SortInto(root, folder).place(ImageResult("line1/e.png", decision="ok"))
    assert problem is not None and "a link" in problem
    assert (elsewhere / "line1" / "e.png").read_bytes() == b"not ours"


def test_row_record_is_plain_json():
    row = ImageResult("line1/a.png", score=0.5, decision="defect", defect_area=12, png="maps/a.png", mask="masks/a.png")
    record = row_record(row, Path("/out"))
    assert record["defect_fraction"] is None and record["score"] == 0.5 and record["image"] == "line1/a.png"
    assert record["files"] == {"png": str(Path("/out/maps/a.png")), "mask": str(Path("/out/masks/a.png"))}
    assert record["output_dir"] == str(Path("/out"))
    assert json.loads(json.dumps(record, allow_nan=False)) == record
    assert row_record(ImageResult("b.png"), Path("o"))["score"] is None
    numpy_row = ImageResult("c.png", score=np.float32(0.25), defect_fraction=np.float32("nan"), defect_regions=np.int64(2))
    assert json.dumps(row_record(numpy_row, Path("o")), allow_nan=False)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server():
    """An endpoint on 127.0.0.1 that keeps the bodies it took; ``codes`` are its next answers (then 200)."""
    state = SimpleNamespace(bodies=[], codes=[], tries=0, entered=threading.Event(), release=None, types=set())

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.tries += 1
            state.types.add(self.headers["Content-Type"])
            state.entered.set()
            if state.release is not None:
                state.release.wait(5)
            code = state.codes.pop(0) if state.codes else 200
            if code < 300:
                state.bodies.append(json.loads(body))
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}/rows"
    yield state
    if state.release is not None:
        state.release.set()
    httpd.shutdown()
    httpd.server_close()


def test_records_arrive_as_json_in_order(server):
    warnings = []
    poster = Poster(server.url, backoff_s=0.01, warn=warnings.append)
    for number in range(20):
        poster.post({"n": number, "image": f"{number}.png"})
    poster.close(wait_s=5)
    assert [body["n"] for body in server.bodies] == list(range(20))
    assert server.types == {"application/json"}
    assert (poster.sent, poster.failed, poster.dropped, poster.pending, warnings) == (20, 0, 0, 0, [])


def test_a_failing_answer_is_tried_again(server):
    server.codes = [500, 500]
    warnings = []
    poster = Poster(server.url, retries=3, backoff_s=0.01, warn=warnings.append)
    poster.post({"n": 1})
    poster.close(wait_s=5)
    assert server.bodies == [{"n": 1}] and server.tries == 3
    assert (poster.sent, poster.failed, warnings) == (1, 0, [])


def test_a_record_failing_every_try_is_warned_then_the_endpoint_recovers(server):
    server.codes = [503] * 3
    warnings = []
    poster = Poster(server.url, retries=2, backoff_s=0.01, warn=warnings.append)
    poster.post({"n": 1})
    poster.post({"n": 2})
    poster.close(wait_s=5)
    assert (poster.sent, poster.failed, server.bodies) == (1, 1, [{"n": 2}])
    assert "503" in poster.last_error
    assert len(warnings) == 2 and server.url in warnings[0] and "3 tries" in warnings[0]
    assert warnings[1] == f"post: {server.url} reachable again"


def _dead_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/rows"


def test_a_dead_endpoint_never_stalls_the_caller_and_is_warned_once(monkeypatch):
    warnings = []
    poster = Poster(_dead_url(), retries=2, backoff_s=0.01, timeout_s=0.5, warn=warnings.append)
    for number in range(50):
        start = time.monotonic()
        poster.post({"n": number})
        assert time.monotonic() - start < 0.1
    deadline = time.monotonic() + 5
    while poster.failed < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert poster.failed >= 3 and poster.last_error
    assert len(warnings) == 1 and "not delivered" in warnings[0] and "\n" not in warnings[0]
    with poster._cond:
        poster._last_warn -= 61  # a minute on: the next failure is summarised in one line
    deadline = time.monotonic() + 5
    while len(warnings) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert "records not delivered to" in warnings[1] and "last error:" in warnings[1]
    start = time.monotonic()
    poster.close(wait_s=1)
    assert time.monotonic() - start < 2
    assert poster.sent == 0 and poster.failed + poster.dropped + poster.pending == 50
    poster.post({"n": 50})  # after close: counted, never sent
    assert poster.dropped + poster.failed + poster.pending == 51


def test_a_full_queue_drops_its_oldest_record(server):
    server.release = threading.Event()
    poster = Poster(server.url, queue_size=2, timeout_s=5, backoff_s=0.01, warn=lambda line: None)
    poster.post({"n": 0})
    assert server.entered.wait(5)  # record 0 is in flight, held by the endpoint
    for number in range(1, 5):
        poster.post({"n": number})
    assert (poster.dropped, poster.pending) == (2, 3)
    server.release.set()
    poster.close(wait_s=5)
    assert [body["n"] for body in server.bodies] == [0, 3, 4]
    assert (poster.sent, poster.dropped) == (3, 2)


@pytest.mark.parametrize("url", ["ftp://x", "localhost:8000", "", "http://", "http://host:port/"])
def test_a_url_that_cannot_be_posted_to_is_an_input_error(url):
    with pytest.raises(InputError) as raised:
        Poster(url)
    assert raised.value.option == "post" and str(raised.value).startswith(f"post {url!r}: ")


def test_the_default_warning_goes_to_stderr(capsys):
    sinks._stderr("post: a line")
    assert capsys.readouterr().err == "post: a line\n"
