"""Watch: latency of one part at a time, a burst against ``predict``, kill -9 in a burst, and memory over a soak.

    .venv/bin/python benchmarks/watch.py                        # about 12 min on 2 cores
    .venv/bin/python benchmarks/watch.py --burst 300 --soak_s 60 --latency_images 10   # a smoke run

Every run is a real ``anomalib-folder`` subprocess on an EfficientAd-S checkpoint made here offline
(``demo.calibrated_checkpoint``), on 256 x 256 PNGs; files are published as a camera does: written to a
dotfile in the watched folder, then renamed to their name.

1. Latency: one image every ``--period_s`` seconds; from its rename to its row in ``results.csv``
   (the benchmark polls the file every 2 ms), p50 / p95 / max, against the bare network's one-image
   forward (``common.bare_model``, batch 1, channels-last, in this process).
2. Soak: then one image a second for ``--soak_s`` seconds into the same watch; its resident memory
   (``VmRSS``) after the latency phase and at the end.
3. Burst: ``--burst`` images renamed in at once into a watch that is running; from the first rename to
   the last row. Then ``anomalib-folder predict`` on the same folder: its rate from its finished record
   (first batch to last file written) and from its wall time with start-up.
4. kill -9: a third of the burst's images renamed in at once, the watch killed with SIGKILL when a
   third of them have rows, five more images landing while it is down, the same command started
   again: rows against images, journal lines, and the scores against the burst's predict run.

Everything goes into one temp dir under /tmp, deleted at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from common import BIN, bare_model, finished_record, journal_rows, make_folder, print_table, scratch, subprocess_env


def rows_in(output_dir: Path) -> int:
    try:
        return max((output_dir / "results.csv").read_bytes().count(b"\n") - 1, 0)
    except OSError:
        return 0


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class WatchProcess:
    """``anomalib-folder watch`` in a subprocess, ready once it said it is watching."""

    def __init__(self, folder: Path, output_dir: Path, checkpoint: Path, env: dict, log: Path, extra: list[str]) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.output_dir, self.log = output_dir, log
        command = [str(BIN / "anomalib-folder"), "watch", str(folder), "--model_path", str(checkpoint),
                   "--output_dir", str(output_dir), "--summary_every", "10", *extra]
        self.handle = log.open("a")
        self.process = subprocess.Popen(command, env=env, stdout=self.handle, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while "watching " not in log.read_text():
            if self.process.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"benchmark: the watch did not start; see {log}\n{log.read_text()[-2000:]}")
            time.sleep(0.05)

    def wait_rows(self, count: int, timeout: float = 1800.0) -> float:
        deadline = time.monotonic() + timeout
        while rows_in(self.output_dir) < count:
            if self.process.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"benchmark: {rows_in(self.output_dir)} rows of {count}; see {self.log}")
            time.sleep(0.002)
        return time.perf_counter()

    def stop(self, sig: int = signal.SIGTERM) -> int:
        self.process.send_signal(sig)
        status = self.process.wait(timeout=120)
        self.handle.close()
        return status


def publish(source: Path, folder: Path) -> float:
    """A camera's publish: the bytes to a dotfile in the folder, then one rename; the rename's time."""
    temporary = folder / f".{source.name}.tmp"
    temporary.write_bytes(source.read_bytes())
    moment = time.perf_counter()
    os.rename(temporary, folder / source.name)
    return moment


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--latency_images", type=int, default=30)
    parser.add_argument("--period_s", type=float, default=2.0)
    parser.add_argument("--soak_s", type=float, default=300.0)
    parser.add_argument("--burst", type=int, default=2000)
    parser.add_argument("--max_wait_ms", type=int, help="the watch's (default: its own)")
    parser.add_argument("--keep", action="store_true")
    options = parser.parse_args()
    with scratch("watch_bench_", options.keep) as work:
        os.environ["XDG_CACHE_HOME"] = str(work / "cache")
        from anomalib_folder_ext.tools.demo import calibrated_checkpoint

        make_folder(work / "calibration", 8, seed=1, size=256)
        calibration = [np.asarray(Image.open(path).convert("RGB")) for path in sorted((work / "calibration").iterdir())]
        checkpoint = calibrated_checkpoint(work / "model.ckpt", calibration)
        soak_images = int(options.soak_s)
        make_folder(work / "pool", options.burst + options.latency_images + soak_images + 5, seed=2, size=256)
        pool = sorted((work / "pool").iterdir())
        env = subprocess_env(work)
        extra = ["--max_wait_ms", str(options.max_wait_ms)] if options.max_wait_ms is not None else []
        one_image_ms = 1000 / bare_model(checkpoint, "32-true", True, 1, 20).images_per_s

        # 1-2. latency, then the soak, in one watch
        watch = WatchProcess(work / "line", work / "line_out", checkpoint, env, work / "line.log", extra)
        latencies = []
        for index, source in enumerate(pool[: options.latency_images]):
            started = publish(source, work / "line")
            latencies.append((watch.wait_rows(index + 1) - started) * 1000)
            time.sleep(max(options.period_s - latencies[-1] / 1000, 0))
        rss_start = rss_mib(watch.process.pid)
        soak_pool = pool[options.latency_images: options.latency_images + soak_images]
        soak_started = time.monotonic()
        for index, source in enumerate(soak_pool):
            publish(source, work / "line")
            time.sleep(max(soak_started + index + 1 - time.monotonic(), 0))
        watch.wait_rows(options.latency_images + len(soak_pool))
        rss_end = rss_mib(watch.process.pid)
        watch.stop()

        # 3. a burst, then predict on the same folder
        burst_pool = pool[options.latency_images + soak_images:][: options.burst]
        stage = work / "stage"
        stage.mkdir()
        for source in burst_pool:
            os.link(source, stage / f".{source.name}")
        watch = WatchProcess(work / "burst", work / "burst_out", checkpoint, env, work / "burst.log", extra)
        started = time.perf_counter()
        for source in burst_pool:
            os.rename(stage / f".{source.name}", work / "burst" / source.name)
        burst_s = watch.wait_rows(len(burst_pool)) - started
        watch.stop()
        predict_log = work / "predict.log"
        predict_started = time.perf_counter()
        subprocess.run([str(BIN / "anomalib-folder"), "predict", "--folder_path", str(work / "burst"), "--model_path",
                        str(checkpoint), "--output_dir", str(work / "predict_out")], env=env, check=True,
                       stdout=predict_log.open("w"), stderr=subprocess.STDOUT)
        predict_wall_s = time.perf_counter() - predict_started
        record = finished_record(work / "predict_out")
        predict_rate = record["predicted"] / record["loop_s"]
        watch_rate = len(burst_pool) / burst_s

        # 4. kill -9 in a burst, five more while down, a restart
        kill_pool = burst_pool[: max(len(burst_pool) // 3, 10)]
        for source in kill_pool:
            os.link(source, stage / source.name)
        watch = WatchProcess(work / "kill", work / "kill_out", checkpoint, env, work / "kill.log", extra)
        for source in kill_pool:
            os.rename(stage / source.name, work / "kill" / source.name)
        watch.wait_rows(len(kill_pool) // 3)
        killed_at = rows_in(work / "kill_out")
        watch.stop(signal.SIGKILL)
        late = pool[-5:]
        for source in late:
            publish(source, work / "kill")
        watch = WatchProcess(work / "kill", work / "kill_out", checkpoint, env, work / "kill.log", extra)
        watch.wait_rows(len(kill_pool) + len(late))
        watch.stop()
        rows = [line.split(",", 1)[0] for line in (work / "kill_out/results.csv").read_text().splitlines()[1:]]
        lines = (work / "kill_out/.journal/rank0.jsonl").read_text().count('"image"')
        reference = {row.image: row.score for row in journal_rows(work / "predict_out")}
        scores = {row.image: row.score for row in journal_rows(work / "kill_out")}
        worst = max(abs(scores[name] - reference[name]) for name in scores if name in reference)

    print(f"bare network, one image (batch 1, channels-last): {one_image_ms:.1f} ms")
    print_table(["latency (rename -> row)", "p50 ms", "p95 ms", "max ms", "p50 - one image ms"],
                [[f"{len(latencies)} images, one every {options.period_s:g} s", f"{statistics.median(latencies):.0f}",
                  f"{percentile(latencies, 0.95):.0f}", f"{max(latencies):.0f}",
                  f"{statistics.median(latencies) - one_image_ms:.0f}"]])
    print_table(["burst", "images", "images/s", "vs predict"],
                [["watch (first rename -> last row)", len(burst_pool), f"{watch_rate:.2f}", f"{watch_rate / predict_rate:.2f}x"],
                 ["predict (first batch -> last file)", record["predicted"], f"{predict_rate:.2f}", "1.00x"],
                 ["predict (wall, with start-up)", record["predicted"], f"{record['predicted'] / predict_wall_s:.2f}", ""]])
    print_table(["kill -9 in a burst", "images", "rows at the kill", "rows after restart", "unique rows",
                 "journal lines", "max |score - predict|"],
                [[f"{len(kill_pool)} + {len(late)} while down", len(kill_pool) + len(late), killed_at, len(rows),
                  len(set(rows)), lines, f"{worst:.1e}"]])
    print_table(["soak", "images", "RSS after latency MiB", "RSS at end MiB", "growth MiB"],
                [[f"1 image/s for {options.soak_s:g} s", len(soak_pool), f"{rss_start:.0f}", f"{rss_end:.0f}",
                  f"{rss_end - rss_start:+.0f}"]])
    return 0


if __name__ == "__main__":
    sys.exit(main())
