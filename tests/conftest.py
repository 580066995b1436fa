"""Shared fixtures: a real EfficientAd checkpoint made offline, and real image folders."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def _share_the_cores() -> None:
    """Parallel workers (pytest-xdist) split the cores between them: each worker, and every process
    it starts, gets its share of threads instead of all of them (threads of several processes
    spinning on the same cores make every test slower). Before numpy and torch are imported: they
    size their thread pools then."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT") or 1)
    if workers > 1 and "OMP_NUM_THREADS" not in os.environ:
        os.environ["OMP_NUM_THREADS"] = str(max(1, len(os.sched_getaffinity(0)) // workers))


_share_the_cores()

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Keep anomalib's cache (pretrained weights, datasets) away from the user's ~/.cache."""
    cache = tmp_path_factory.mktemp("xdg_cache")
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(cache)
    yield cache
    if old is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = old


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:  # noqa: ANN001 - pytest-xdist's hook
    """A worker that died says nothing of why when the kernel killed it: print the kernel's kill lines
    (out of memory), where this machine lets them be read."""
    if error is None:
        return
    import subprocess

    try:
        kernel = subprocess.run(["dmesg"], capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return
    kills = [line for line in kernel.splitlines() if "Killed process" in line or "out of memory" in line.lower()]
    print(f"\n{node.gateway.id} died ({error}); the kernel's kill lines: {kills[-5:] or 'none'}", file=sys.stderr)


def textured_image(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A smooth random texture (not white noise), so maps have structure."""
    coarse = rng.random((height // 16 + 2, width // 16 + 2, 3))
    image = Image.fromarray((coarse * 255).astype(np.uint8)).resize((width, height), Image.BICUBIC)
    noise = rng.normal(0, 6, (height, width, 3))
    return np.clip(np.asarray(image, dtype=np.float64) + noise, 0, 255).astype(np.uint8)


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real anomalib EfficientAd-S checkpoint, calibrated on fixture images, saved by a Trainer.

    Made once per test run: parallel workers (pytest-xdist) share it through their common temp
    folder, the first one to get the lock making it.
    """
    from filelock import FileLock

    from anomalib_folder_ext.tools.demo import calibrated_checkpoint

    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # every worker's base temp folder is under it
    path = shared / "model" / "efficient_ad.ckpt"
    with FileLock(str(shared / "model.lock")):
        if not path.exists():
            (path.parent / "partial").mkdir(parents=True, exist_ok=True)
            rng = np.random.default_rng(0)
            images = [textured_image(rng, 256, 256) for _ in range(6)]
            made = calibrated_checkpoint(path.parent / "partial" / path.name, images)
            made.replace(path)
    return path


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test that needs the model is slow, whatever its module says. The longest files first, and
    a file's slow tests before its quick ones, so parallel workers finish together: a worker is
    handed the next file when two tests of its current one are left."""
    for item in items:
        if "checkpoint" in getattr(item, "fixturenames", ()) and item.get_closest_marker("slow") is None:
            item.add_marker(pytest.mark.slow)
    items.sort(key=lambda item: (LONGEST.index(item.path.name) if item.path.name in LONGEST else len(LONGEST),
                                 item.get_closest_marker("slow") is None))


# Test files by how long they take, longest first (the rest follow in their usual order).
LONGEST = ["test_demo.py", "test_multinode.py", "test_exported.py", "test_batches.py", "test_ddp.py", "test_python_docs.py",
           "test_robustness.py", "test_predict.py", "test_hostile.py", "test_python_api.py", "test_errors.py",
           "test_precision.py", "test_config.py"]


# name -> (size (W, H), format); a.png and a.jpg collide on purpose, img2 < img10 tests natural order
MIXED_IMAGES = {
    "img10.png": ((256, 256), "PNG"),
    "img2.JPG": ((320, 240), "JPEG"),
    "a.png": ((200, 300), "PNG"),
    "a.jpg": ((256, 256), "JPEG"),
    "scan.bmp": ((128, 128), "BMP"),
    "wafer.tiff": ((300, 300), "TIFF"),
    "sub/deep.jpeg": ((260, 250), "JPEG"),
}


def write_images(folder: Path, spec: dict[str, tuple[tuple[int, int], str]], seed: int = 1) -> list[str]:
    rng = np.random.default_rng(seed)
    for name, ((width, height), fmt) in spec.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(textured_image(rng, height, width)).save(path, format=fmt)
    return list(spec)


@pytest.fixture
def mixed_folder(tmp_path: Path) -> Path:
    """Mixed formats and sizes, a name collision, a sub-folder and a file that is no image."""
    folder = tmp_path / "batch_01"
    write_images(folder, MIXED_IMAGES)
    (folder / "notes.txt").write_text("not an image")
    return folder


def command_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a console command of this venv runs in: its ``bin`` first on ``PATH``."""
    bin_dir = Path(sys.executable).parent
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHONWARNINGS": "ignore",
            **(env or {})}


def run_cli(args: list[str], cwd: Path, timeout: int = 300, env: dict[str, str] | None = None):
    """Run a console command of this venv as a user would, capturing its output."""
    import subprocess

    return subprocess.run(args, cwd=cwd, env=command_env(env), capture_output=True, text=True, timeout=timeout,
                          check=False)


def run_here(args: list[str], cwd: Path, env: dict[str, str] | None = None):
    """``anomalib-folder ARGS`` or ``anomalib ARGS`` run in this process: the same files, exit status
    and printed lines as the command, without starting Python, torch and anomalib again for every run
    (about 10 s on 2 cores). For what a run decides and writes; the console as a whole, signals and
    DDP are tested on the real commands (:func:`run_cli`)."""
    import contextlib
    import io
    import subprocess

    from anomalib_folder_ext.cli import command as cli
    from anomalib_folder_ext.cli.edge import stop_for
    from anomalib_folder_ext.distributed import liveness
    from anomalib_folder_ext.errors import ANOMALIB_PREDICT

    saved_env, saved_cwd, saved_hook = dict(os.environ), Path.cwd(), sys.excepthook
    stdout, stderr = io.StringIO(), io.StringIO()
    os.environ.update(env or {})
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                if args[0] == "anomalib":  # as the command (anomalib.cli.cli:main), with the edge our classes give it
                    from anomalib.cli.cli import AnomalibCLI
                    from anomalib.loggers import configure_logger

                    configure_logger()
                    saved_argv, sys.argv = sys.argv, ["anomalib", *args[1:]]  # this process is the command now
                    try:
                        AnomalibCLI(list(args[1:]))
                        status = 0
                    except Exception as exc:
                        status = stop_for(exc, ANOMALIB_PREDICT)
                        if status is None:
                            raise
                    finally:
                        sys.argv = saved_argv
                else:
                    status = cli.main(list(args[1:]))
            except SystemExit as exit_info:
                status = exit_info.code or 0
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
        sys.excepthook, liveness.hard_stop = saved_hook, None
    return subprocess.CompletedProcess(args, status, stdout.getvalue(), stderr.getvalue())
