"""A hostile user, end to end through the commands (run in this process but for the plain
`anomalib predict`, which goes through the installed command): links planted in the output dir, planted
journal rows, an image and a checkpoint replaced under their names, `/` and `$HOME` as output dirs,
names a spreadsheet or a browser would run, overrides that go wrong late, an output root inside the
batch root. In every case nothing outside the run's output dir changes (every file hashed before
and after), and every refusal is one line with exit status 2."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pytest
import torch
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from conftest import REPO, run_cli, run_here, write_images

pytestmark = pytest.mark.slow

HOSTILE_NAMES = ["=cmd.png", "javascript:alert(1);x.png", "a #1?.png"]


def snapshot(root: Path, skip: tuple[Path, ...] = ()) -> dict[str, str]:
    """A hash of every file (and the target of every link) under ``root``, less the ``skip`` trees."""
    found = {}
    for path in sorted(root.rglob("*")):
        if any(path == tree or tree in path.parents for tree in skip):
            continue
        key = path.relative_to(root).as_posix()
        if path.is_symlink():
            found[key] = f"link {os.readlink(path)}"
        elif path.is_file():
            found[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def predict(checkpoint: Path, folder: Path, out: Path, *extra: str, cwd: Path, env: dict | None = None):
    return run_here(["anomalib-folder", "predict", "--model_path", str(checkpoint), "--folder_path", str(folder),
                     "--output_dir", str(out), "--batch_size", "4", *extra], cwd=cwd, env=env)


def assert_refused(result, *fragments: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(("error:", "anomalib-folder: error:")), result.stderr[-3000:]
    for fragment in fragments:
        assert fragment in last, last


def rows_of(out: Path) -> dict[str, dict[str, str]]:
    from anomalib_folder_ext.outputs.summary import read_results

    return {row["image"]: row for row in read_results(out)}


def npy_bytes(out: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(out.glob("*.npy"))}


# -- refusals before anything loads --------------------------------------------------------------------
@pytest.fixture(scope="module")
def place(tmp_path_factory):
    """A folder of images, a file outside that links point at, and a fake home directory."""
    root = tmp_path_factory.mktemp("hostile")
    write_images(root / "images", {"a.png": ((64, 64), "PNG"), "sub/b.png": ((64, 64), "PNG")})
    (root / "outside").mkdir()
    (root / "outside" / "precious.yaml").write_text("the user's file\n")
    (root / "home").mkdir()
    return root


@pytest.mark.parametrize(
    ("plant", "extra", "fragments"),
    [
        ({"config.yaml": "outside/precious.yaml"}, [], ["config.yaml: is a symbolic link"]),
        ({".journal": "outside"}, ["--resume", "True"], [".journal: is a symbolic link"]),
        ({"sub": "outside"}, ["--recursive", "True"], ["sub: is a symbolic link"]),
        ({"notes.txt": None}, [], ["is not empty (1 entries: notes.txt) and holds no run of this tool",
                                   "--allow_other_files True"]),
        ({"results_summary.txt": None}, ["--allow_other_files", "True"], ["its results_summary.txt is not from a run"]),
    ],
    ids=["linked-config", "linked-journal", "linked-subfolder", "someone-elses-dir", "their-summary"],
)
def test_an_output_dir_that_is_not_the_runs_own_is_refused_and_nothing_outside_changes(
        plant, extra, fragments, place, checkpoint, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    for name, target in plant.items():
        if target is None:
            (out / name).write_text("the user's")
        else:
            (out / name).symlink_to(place / target)
    before = snapshot(place)
    result = predict(checkpoint, place / "images", out, *extra, cwd=tmp_path)
    assert_refused(result, *fragments)
    assert snapshot(place) == before


@pytest.mark.parametrize("where", ["/", "$HOME"])
def test_the_root_and_the_home_directory_are_refused_as_output_dirs(where, place, checkpoint, tmp_path):
    home = place / "home"
    out = Path(where.replace("$HOME", str(home)))
    before = snapshot(home)
    result = predict(checkpoint, place / "images", out, cwd=tmp_path, env={"HOME": str(home)})
    assert_refused(result, "the root of the file system" if where == "/" else "your home directory")
    assert snapshot(home) == before and not (home / ".journal").exists()


def test_anomalib_predict_refuses_a_linked_config_yaml_with_exit_2(place, checkpoint, tmp_path):
    """The issue's plain run: no flags, a config.yaml in the output dir that links to a file elsewhere."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "config.yaml").symlink_to(place / "outside" / "precious.yaml")
    before = snapshot(place)
    result = run_cli(["anomalib", "predict", "--config", str(REPO / "configs/folder.yaml"), "--ckpt_path", str(checkpoint),
                      "--data.init_args.folder_path", str(place / "images"), "--data.init_args.output_dir", str(out)],
                     cwd=tmp_path)
    assert_refused(result, "config.yaml: is a symbolic link")
    assert snapshot(place) == before and sorted(p.name for p in out.iterdir()) == ["config.yaml"]


def test_overwrite_in_a_dir_of_other_files_deletes_only_what_the_run_wrote(place, checkpoint, tmp_path):
    """The output dir is the input folder's parent (allowed): the user's hidden *.tmp drafts, beside
    the maps and inside the input folder, even under the names of the tool's temporaries, survive a run,
    an overwrite and a resume; the input folder is untouched."""
    out = tmp_path / "work"
    shutil.copytree(place / "images", out / "images")
    (out / "images" / ".draft.tmp").write_text("the user's draft")
    (out / ".notes.tmp").write_text("the user's notes")
    (out / "todo.txt").write_text("the user's list")
    for name in (".results.csv.tmp", ".a_anomaly.npy.tmp"):  # named as the tool's temporaries are
        (out / name).write_text(f"the user's {name}")
    theirs = snapshot(out)
    first = predict(checkpoint, out / "images", out, "--recursive", "True", "--allow_other_files", "True", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    assert (out / "a_anomaly.npy").is_file() and (out / "sub" / "b_anomaly.npy").is_file()
    for extra in (["--overwrite", "True"], ["--resume", "True"]):
        again = predict(checkpoint, out / "images", out, "--recursive", "True", "--allow_other_files", "True", *extra,
                        cwd=tmp_path)
        assert again.returncode == 0, again.stderr[-3000:]
    after = snapshot(out)
    assert {name: after[name] for name in theirs} == theirs  # every file of the user's, byte for byte
    ours = set(after) - set(theirs)
    assert ours == {"a_anomaly.npy", "a_anomaly.png", "sub/b_anomaly.npy", "sub/b_anomaly.png", "results.csv",
                    "defective.csv", "results_summary.txt", "config.yaml", ".journal/owner.json", ".journal/rank0.jsonl",
                    ".journal/finished.json"}


# -- resume trusts only what it can verify -----------------------------------------------------------
@pytest.fixture(scope="module")
def finished(checkpoint, tmp_path_factory):
    """11 images in batches of 4 (the last one has 3), hostile names among them, with the report."""
    work = tmp_path_factory.mktemp("resume")
    names = {f"img{index:02d}.png": ((64, 64), "PNG") for index in range(8)}
    names |= {name: ((64, 64), "PNG") for name in HOSTILE_NAMES}
    write_images(work / "in", names, seed=4)
    result = predict(checkpoint, work / "in", work / "clean", "--report", "True", cwd=work)
    assert result.returncode == 0, result.stderr[-3000:]
    return work


def test_hostile_names_are_safe_in_the_csv_and_in_the_reports_links(finished, tmp_path):
    out = finished / "clean"
    with (out / "results.csv").open(newline="") as handle:
        cells = [row[0] for row in csv.reader(handle)]
    assert "'=cmd.png" in cells and "javascript:alert(1);x.png" in cells  # a formula cell gets its apostrophe
    assert set(HOSTILE_NAMES) <= set(rows_of(out))
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed (Debian package chromium; .ci/run installs it)")
    # The test's own copy of the page, beside it, with a script that lists where each link leads.
    probe = out / "probe.html"
    script = ('<script>window.addEventListener("load", () => { document.body.dataset.links = '
              'JSON.stringify([...document.links].map((a) => a.href)); });</script></body>')
    probe.write_text((out / "report.html").read_text().replace("</body>", script))
    try:
        dom = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                              f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=3000", "--dump-dom",
                              probe.as_uri()], capture_output=True, text=True, timeout=120, check=False).stdout
    finally:
        probe.unlink()
    found = re.search(r'data-links="([^"]*)"', dom)
    assert found, dom[-2000:]
    links = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert len(links) >= 2 * len(HOSTILE_NAMES)
    for link in links:
        url = urlparse(link)
        assert url.scheme == "file" and not url.fragment and not url.query, link
        assert Path(unquote(url.path)).parent == out.resolve() and Path(unquote(url.path)).is_file(), link


def test_a_resumed_run_writes_the_uninterrupted_runs_bytes(finished, checkpoint):
    """Killed after 6 of 11 images (journal rows and maps of the rest gone): resumed, every NPY is the
    clean run's to the bit, also for the images of the short last batch."""
    work = finished
    clean, resumed = work / "clean", work / "resumed"
    shutil.copytree(clean, resumed)
    log = resumed / ".journal" / "rank0.jsonl"
    lines = log.read_text().splitlines()
    kept = {json.loads(line)["image"] for line in lines[1:7]}
    log.write_text("\n".join(lines[:7]) + "\n")
    for name in ("results.csv", "results_summary.txt", "report.html", "report.png", ".journal/finished.json"):
        (resumed / name).unlink()
    for row in rows_of(clean).values():
        if row["image"] not in kept:
            (resumed / row["npy"]).unlink()
    result = predict(checkpoint, work / "in", resumed, "--report", "True", "--resume", "True", cwd=work)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "6 from the earlier run" in result.stdout.strip().splitlines()[-1]
    assert npy_bytes(resumed) == npy_bytes(clean)
    assert (resumed / "results.csv").read_bytes() == (clean / "results.csv").read_bytes()


def replace_keeping_size_and_time(image: Path) -> None:
    """Another picture under the name, of the same byte size (a PNG text chunk pads it) and with the
    modification time put back, as ``cp -p`` or ``rsync -t`` would leave a replaced file."""
    before = image.stat()
    flat = Image.new("RGB", Image.open(image).size, (90, 120, 150))
    buffer = io.BytesIO()
    flat.save(buffer, format="PNG")
    padding = PngInfo()
    padding.add_text("pad", "x" * (before.st_size - buffer.tell() - 16))  # a tEXt chunk: 12 bytes, "pad\0", text
    flat.save(image, format="PNG", pnginfo=padding)
    os.utime(image, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert image.stat().st_size == before.st_size and image.stat().st_mtime_ns == before.st_mtime_ns


def test_resume_ignores_planted_rows_redoes_a_replaced_image_and_refuses_replaced_weights(finished, checkpoint):
    work = finished
    out = work / "planted"
    shutil.copytree(work / "clean", out)
    (work / "victim_anomaly.npy").write_text("outside the output dir")
    clean_rows = rows_of(out)
    with (out / ".journal" / "rank0.jsonl").open("a") as handle:  # rows resume must not trust
        planted = {**json.loads((out / ".journal" / "rank0.jsonl").read_text().splitlines()[1]),
                   "image": "img03.png", "npy": "../victim_anomaly.npy", "score": 0.16}
        handle.write(json.dumps(planted) + "\n")
        handle.write(json.dumps({"image": "img04.png", "status": "ok", "npy": "/etc/passwd", "score": 11.7}) + "\n")
    (out / "results.csv").unlink()
    (out / ".journal" / "finished.json").unlink()
    replace_keeping_size_and_time(work / "in" / "img05.png")  # another picture under the same name, as cp -p leaves it
    before = snapshot(work, skip=(out,))
    result = predict(checkpoint, work / "in", out, "--report", "True", "--resume", "True", cwd=work)
    assert result.returncode == 0, result.stderr[-3000:]
    notice = [line for line in result.stderr.splitlines() if line.startswith("resume:")]
    assert len(notice) == 1 and "1 changed since" in notice[0] and "img05.png" in notice[0], result.stderr
    assert "2 not written by this tool" in notice[0]  # the row pointing out of the dir, the malformed line
    rows = rows_of(out)
    assert rows["img03.png"]["score"] == clean_rows["img03.png"]["score"] and rows["img03.png"]["npy"] == "img03_anomaly.npy"
    assert rows["img04.png"] == clean_rows["img04.png"]  # the malformed line was set aside, its earlier row kept
    assert rows["img05.png"]["score"] != clean_rows["img05.png"]["score"]  # predicted again, the new picture's
    assert snapshot(work, skip=(out,)) == before  # the victim and every other file outside: untouched

    swapped = work / "swapped.ckpt"  # new weights saved over the checkpoint the run used
    shutil.copy(checkpoint, swapped)
    result = predict(swapped, work / "in", out, "--resume", "True", cwd=work)
    assert result.returncode == 0, result.stderr[-3000:]  # the same bytes at another path: the same model
    content = torch.load(swapped, map_location="cpu", weights_only=False)
    key = next(name for name in content["state_dict"] if name.endswith("weight"))
    content["state_dict"][key] = content["state_dict"][key] + 0.01
    torch.save(content, swapped)
    (out / "results.csv").unlink()
    before_maps = npy_bytes(out)
    refused = predict(swapped, work / "in", out, "--resume", "True", cwd=work)
    assert_refused(refused, "its earlier run used other weights", "--overwrite True")
    assert npy_bytes(out) == before_maps


# -- multi-folder runs -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def split_root(tmp_path_factory):
    work = tmp_path_factory.mktemp("batch_root")
    write_images(work / "source", {f"part{index}.png": ((64, 64), "PNG") for index in range(1, 7)}, seed=3)
    result = run_cli(["anomalib-folder", "split", "source", "--size", "3", "--out", "root"], cwd=work)
    assert result.returncode == 0, result.stderr
    return work


def test_a_bad_override_is_refused_before_the_first_folder_runs(split_root, checkpoint):
    work = split_root
    bad = work / "bad.yaml"  # its output dir is its own input folder: refused now, not after batch_01 ran for hours
    bad.write_text(f"data:\n  init_args:\n    folder_path: {work / 'root/batch_02'}\n    output_dir: {work / 'root/batch_02'}\n")
    before = snapshot(work)
    result = run_here(["anomalib-folder", "predict", "--config", str(REPO / "configs/folder.yaml"),
                       "--ckpt_path", str(checkpoint), "--batches", str(work / "root/configs/batch_01.yaml"), str(bad),
                       "--output_root", "refused"], cwd=work)
    assert_refused(result, "bad.yaml: output_dir", "is the input folder")
    assert snapshot(work) == before and not (work / "refused").exists()


def test_an_output_root_inside_the_batch_root_is_never_a_batch_and_only_merges(split_root, checkpoint):
    work = split_root
    args = ["anomalib-folder", "batches", "root", "--model_path", str(checkpoint), "--output_root", "root/results",
            "--recursive", "True", "--batch_size", "3"]
    inputs = snapshot(work / "root", skip=(work / "root" / "results",))
    first = run_here([*args, "--only", "batch_01"], cwd=work)
    assert first.returncode == 0, first.stderr[-3000:]
    second = run_here([*args, "--only", "batch_02"], cwd=work)
    assert second.returncode == 0, second.stderr[-3000:]
    third = run_here(args, cwd=work)  # every batch folder: results/ is not one of them
    assert third.returncode == 0, third.stderr[-3000:]
    assert third.stdout.count("done earlier") == 2 and "[2/2]" in third.stdout and "[3/" not in third.stdout
    with (work / "root" / "results" / "all_batches.csv").open(newline="") as handle:
        combined = list(csv.DictReader(handle))
    assert [row["batch"] for row in combined] == ["batch_01"] * 3 + ["batch_02"] * 3
    record = json.loads((work / "root" / "results" / "all_batches.json").read_text())
    assert [entry["name"] for entry in record["folders"]] == ["batch_01", "batch_02"]
    assert "also cover 1 folder of earlier runs" in second.stdout
    assert np.load(work / "root" / "results" / combined[0]["npy"]).shape == (256, 256)
    assert snapshot(work / "root", skip=(work / "root" / "results",)) == inputs
