"""Several machines, tried on one: two "nodes" of one process each on localhost (gloo), launched
as the README's recipes launch them (Lightning's environment variables, and torchrun). Each image
once, the same files as one process, and a node killed mid-job ends the job with one line; the
same command then finishes it."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import REPO, command_env, run_here, write_images

# four images a folder: two a node, and still folders left to do when the first one finishes
FOLDERS = {f"batch_0{number}": {f"img{index:02d}.png": ((80 + 8 * (index % 3), 80), "PNG") for index in range(4)}
           for number in (1, 2, 3)}
ON_CPU = ["--accelerator", "cpu", "--devices", "1", "--trainer.num_nodes", "2", "--trainer.strategy", "ddp"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def node_command(args: list[str], node_rank: int, port: int, torchrun: bool = False) -> tuple[list[str], dict]:
    """The README's localhost recipe for one "node": the same command on each, told its node rank."""
    if torchrun:
        return ["torchrun", "--nnodes", "2", "--node_rank", str(node_rank), "--nproc_per_node", "1", "--master_addr",
                "127.0.0.1", "--master_port", str(port), "--no-python", *args], {}
    return args, {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "NODE_RANK": str(node_rank)}


def start_nodes(args: list[str] | tuple[list[str], list[str]], cwd: Path, torchrun: bool = False,
                env: dict | None = None, only: int | None = None) -> list[subprocess.Popen]:
    """``args``: the command of both nodes, or each node's; ``only``: start that node alone."""
    port, nodes = free_port(), []
    each = args if isinstance(args, tuple) else (args, args)
    scratch = cwd / "tmp"  # torchrun's logs and what a killed node leaves stay with the test
    scratch.mkdir(exist_ok=True)
    for node_rank in (0, 1) if only is None else (only,):
        command, launch = node_command(each[node_rank], node_rank, port, torchrun)
        nodes.append(subprocess.Popen(command, cwd=cwd, env=command_env({**launch, "TMPDIR": str(scratch), **(env or {})}),
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True))
    return nodes


def finish(nodes: list[subprocess.Popen], timeout: int = 400) -> list[tuple[int, str, str]]:
    results = []
    for node in nodes:
        try:
            out, err = node.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"a node still ran after {timeout} s\n{stop_all(nodes)}")
        results.append((node.returncode, out, err))
    return results


def stop_all(nodes: list[subprocess.Popen]) -> str:
    """Every node killed with what it started; what each said, to tell why the job did not go on."""
    for node in nodes:  # the group too where the node itself ended: its ranks may not have
        with contextlib.suppress(ProcessLookupError):
            os.killpg(node.pid, signal.SIGKILL)
    said = []
    for rank, node in enumerate(nodes):
        try:
            out, err = node.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            out, err = "", "(its output could not be read)"
        said.append(f"--- node {rank}, exit status {node.returncode} ---\n{(out or '')[-1000:]}{(err or '')[-2500:]}")
    return "\n".join(said)


def run_nodes(args: list[str], cwd: Path, torchrun: bool = False) -> list[tuple[int, str, str]]:
    results = finish(start_nodes(args, cwd, torchrun))
    for status, _, err in results:
        assert status == 0, err[-3000:]
    return results


def results_and_statistics(output_dir: Path) -> tuple[str, str]:
    """results.csv, and the summary from its statistics on (the lines above them say how the run went)."""
    summary = (output_dir / "results_summary.txt").read_text()
    return (output_dir / "results.csv").read_text(), summary[summary.index("Overall statistics"):]


@pytest.fixture(scope="module")
def work(checkpoint, tmp_path_factory):
    """Three batch folders and their one-process run, the reference."""
    root = tmp_path_factory.mktemp("nodes")
    for name, images in FOLDERS.items():
        write_images(root / "data" / name, images, seed=int(name[-1]))
    reference = run_here(["anomalib-folder", "batches", "data", "--model_path", str(checkpoint), "--output_root",
                          "single", "--accelerator", "cpu"], cwd=root)
    assert reference.returncode == 0, reference.stderr[-3000:]
    return root, checkpoint


def assert_same_as_one_process(root: Path, output_root: str) -> None:
    assert (root / output_root / "all_batches.csv").read_text() == (root / "single" / "all_batches.csv").read_text()
    for name, images in FOLDERS.items():
        mine, single = root / output_root / f"inference_results_{name}", root / "single" / f"inference_results_{name}"
        assert results_and_statistics(mine) == results_and_statistics(single)
        assert len(list(mine.glob("*_anomaly.npy"))) == len(images) == len(list(mine.glob("*_anomaly.png")))


def test_the_readmes_localhost_recipe_is_the_command_these_tests_run():
    lines = [line.removesuffix(" &") for line in (REPO / "README.md").read_text().splitlines()
             if line.startswith("MASTER_ADDR=127.0.0.1")]
    args = ["anomalib-folder", "batches", "data", "--model_path", "model.ckpt", "--output_root", "out", *ON_CPU]
    assert len(lines) == 2
    for node_rank, line in enumerate(lines):
        command, env = node_command(args, node_rank, 29500)
        assert line == " ".join([*(f"{name}={value}" for name, value in env.items()), *command])


@pytest.mark.slow
def test_one_folder_on_two_nodes_equals_one_process(work):
    root, checkpoint = work
    results = run_nodes(["anomalib-folder", "predict", "--model_path", str(checkpoint), "--folder_path",
                         "data/batch_01", "--output_dir", "one_folder", *ON_CPU], cwd=root)
    output = root / "one_folder"
    assert results_and_statistics(output) == results_and_statistics(root / "single" / "inference_results_batch_01")
    assert "ranks             : 2 (images per rank: 2, 2)" in (output / "results_summary.txt").read_text()
    assert "one_folder/: 4 images" in results[0][1] and not results[1][1].strip()  # rank 0 alone says where


@pytest.mark.slow
def test_batch_folders_on_two_torchrun_nodes_then_redone(work):
    """Resume on nodes (the default) is the killed job's rerun below; here the earlier run is replaced."""
    root, checkpoint = work
    batches = ["anomalib-folder", "batches", "data", "--model_path", str(checkpoint), "--output_root", "torchrun",
               *ON_CPU]
    first = run_nodes(batches, cwd=root, torchrun=True)
    assert_same_as_one_process(root, "torchrun")
    assert "done: 3 batch folders, 12 images (12 ok, 0 failed)" in first[0][1]
    assert not first[1][1].strip()  # one writer of the combined files and of the console: rank 0

    redone = run_nodes([*batches, "--resume", "False"], cwd=root, torchrun=True)  # the earlier run replaced
    assert "done earlier" not in redone[0][1]
    assert redone[0][1].count(" images (4 ok, 0 failed) in ") == 3
    assert_same_as_one_process(root, "torchrun")


def nodes_past_the_first_folder(root: Path, checkpoint: Path, output_root: str, lost_after: int,
                                *extra: str) -> tuple[list[str], list[subprocess.Popen]]:
    """Both nodes started on the batch folders, once the first folder is finished: the job partway through.
    Returns the command (the same on both) and the nodes."""
    batches = ["anomalib-folder", "batches", "data", "--model_path", str(checkpoint), "--output_root", output_root,
               *extra, *ON_CPU]
    nodes = start_nodes(batches, cwd=root, env={"ANOMALIB_FOLDER_LOST_AFTER": str(lost_after)})  # default 60 s
    first_folder_done = root / output_root / "inference_results_batch_01" / ".journal" / "finished.json"
    deadline = time.monotonic() + 300
    while not first_folder_done.exists() and time.monotonic() < deadline and nodes[0].poll() is None:
        time.sleep(0.2)
    if not first_folder_done.exists():  # within the test's time limit, saying what each node said
        running = "still running" if nodes[0].poll() is None else f"ended with {nodes[0].returncode}"
        pytest.fail(f"the first batch folder was not finished (node 0 {running})\n{stop_all(nodes)}")
    return batches, nodes


@pytest.mark.slow
def test_a_node_killed_mid_job_ends_the_job_with_one_line_and_the_same_command_finishes_it(work):
    root, checkpoint = work
    batches, nodes = nodes_past_the_first_folder(root, checkpoint, "lost", 20)
    os.killpg(nodes[1].pid, signal.SIGKILL)  # node 1 and everything it started, partway through the job
    killed = time.monotonic()
    (status, _, err), _ = finish(nodes)
    assert time.monotonic() - killed < 120  # noticed, not hung
    assert status == 4, err[-3000:]
    assert err.strip().startswith("error: rank 1 (node 1) stopped answering 2") and err.strip().count("\n") == 0, err
    assert "run the same command on every node to finish the job" in err
    assert not (root / "lost" / "all_batches.csv").exists()  # nothing claims the job complete

    rerun = run_nodes(batches, cwd=root)
    assert "[1/3] batch_01: done earlier" in rerun[0][1]
    assert_same_as_one_process(root, "lost")


def assert_refused_on_both_nodes(results: list[tuple[int, str, str]], line: str) -> None:
    for node, (status, _, err) in enumerate(results):
        assert status == 2, f"node {node}: {err[-3000:]}"
        assert err.strip() == line, f"node {node}: {err[-3000:]}"


@pytest.mark.slow
def test_nodes_told_different_folders_end_together_with_one_line_naming_the_setting_and_the_nodes(work):
    """Same file names, other images: each node would predict its own and one results.csv would mix them."""
    root, checkpoint = work
    write_images(root / "elsewhere" / "batch_01", FOLDERS["batch_01"], seed=9)
    predict = ["anomalib-folder", "predict", "--model_path", str(checkpoint), "--output_dir", "mixed", *ON_CPU]
    results = finish(start_nodes(([*predict, "--folder_path", "data/batch_01"],
                                  [*predict, "--folder_path", "elsewhere/batch_01"]), cwd=root))
    assert_refused_on_both_nodes(results, (
        f"error: the nodes disagree on folder_path ('{(root / 'data' / 'batch_01').resolve()}' on node 0; "
        f"'{(root / 'elsewhere' / 'batch_01').resolve()}' on node 1); every node runs the same command, naming the same folders, "
        "model and settings"))
    assert not (root / "mixed" / "results.csv").exists()


@pytest.mark.slow
def test_batch_folders_on_nodes_with_different_batch_sizes_are_refused_before_any_folder_is_read(work):
    root, checkpoint = work
    batches = ["anomalib-folder", "batches", "data", "--model_path", str(checkpoint), "--output_root", "sizes", *ON_CPU]
    results = finish(start_nodes((batches, [*batches, "--batch_size", "2"]), cwd=root))
    assert_refused_on_both_nodes(results, (
        "error: the nodes disagree on batch_size (8 on node 0; 2 on node 1); every node runs the same command, "
        "naming the same folders, model and settings"))
    assert not (root / "sizes").exists() or not any((root / "sizes").rglob("results.csv"))


@pytest.mark.slow
def test_a_master_port_in_use_on_node_0_is_one_line_naming_the_port(work):
    root, checkpoint = work
    with socket.socket() as holder:  # another program on the port
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        command, launch = node_command(["anomalib-folder", "predict", "--model_path", str(checkpoint), "--folder_path",
                                        "data/batch_01", "--output_dir", "port_taken", *ON_CPU], 0, port)
        result = subprocess.run(command, cwd=root, env=command_env(launch), capture_output=True, text=True, timeout=300,
                                check=False)
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.strip() == (
        f"error: MASTER_PORT {port} is in use on this machine (a job still running, or another program), so node 0 "
        "cannot wait there for the other nodes; start every node with another free MASTER_PORT"), result.stderr[-3000:]
    assert not (root / "port_taken" / "results.csv").exists()


@pytest.mark.slow
def test_a_node_that_cannot_reach_node_0_says_it_is_waiting(work):
    """Node 1 started alone: torch would wait its 30 minutes without a word."""
    root, checkpoint = work
    node = start_nodes(["anomalib-folder", "predict", "--model_path", str(checkpoint), "--folder_path", "data/batch_01",
                        "--output_dir", "alone", *ON_CPU], cwd=root, only=1)[0]
    try:
        line = node.stderr.readline()  # the first line it says, whenever it comes
    finally:
        os.killpg(node.pid, signal.SIGKILL)
        node.communicate()
    assert re.fullmatch(r"node 1: waiting 0:00:3\d for node 0 at 127\.0\.0\.1:\d+ \(MASTER_ADDR:MASTER_PORT\): start the "
                        r"same command there with NODE_RANK=0, or check the address and port; torch gives up after "
                        r"30 minutes\n", line), line


@pytest.mark.slow
def test_ctrl_c_on_node_1_says_so_there_and_ends_the_job(work):
    root, checkpoint = work
    _, nodes = nodes_past_the_first_folder(root, checkpoint, "ctrl_c", 20, "--batch_size", "1")
    os.killpg(nodes[1].pid, signal.SIGINT)  # what Ctrl-C in node 1's terminal sends
    (status_0, _, err_0), (status_1, _, err_1) = finish(nodes)
    assert status_1 == 130, err_1[-3000:]
    assert re.fullmatch(r"interrupted on node 1 \(rank 1\): the images it finished are recorded in \S+; run the job "
                        r"again on every node with the same command \(resume is on by default\) to predict only the "
                        r"rest\n", err_1), err_1[-3000:]
    assert status_0 != 0 and err_0.strip().count("\n") == 0, err_0[-3000:]  # node 0 ends too, in one line
    assert not (root / "ctrl_c" / "all_batches.csv").exists()


@pytest.mark.slow
def test_a_stopped_node_ends_the_job_soon_after_its_line_and_says_nothing_more_when_it_resumes(work):
    """SIGSTOP keeps the node's sockets open: node 0 waits in a collective that never fails by itself."""
    root, checkpoint = work
    _, nodes = nodes_past_the_first_folder(root, checkpoint, "stopped", 10, "--batch_size", "1")
    os.killpg(nodes[1].pid, signal.SIGSTOP)  # Ctrl-Z, a debugger, a machine that froze
    line = nodes[0].stderr.readline()  # node 0 says the lost rank ...
    said = time.monotonic()
    status_0 = nodes[0].wait(timeout=120)  # ... and ends soon after, not after another 45 s
    ended = time.monotonic()
    os.killpg(nodes[1].pid, signal.SIGCONT)
    (_, _, rest_0), (status_1, _, err_1) = finish(nodes)
    assert status_0 == 4, line + rest_0[-3000:]
    assert line.startswith("error: rank 1 (node 1) stopped answering 1") and not rest_0.strip(), line + rest_0[-3000:]
    assert ended - said < 25, ended - said
    assert status_1 != 0 and err_1.strip().count("\n") == 0, err_1[-3000:]  # one line at most: no C++ stack frames
    assert not (root / "stopped" / "all_batches.csv").exists()
