"""``anomalib-folder``: the old script's flags, translated into an ``anomalib predict`` run.

Nothing here predicts: the dispatch only. The flags become a run spec (:mod:`~anomalib_folder_ext.run.translate`),
checked before anomalib (and its rich traceback handler) is imported (:mod:`~anomalib_folder_ext.run.preflight`),
so a bad path costs one line, not a wall; :mod:`~anomalib_folder_ext.run.launch` hands the run to anomalib's
own CLI, as the Python front door does. This is where the command ends: the exit status is decided here
(:mod:`~anomalib_folder_ext.cli.edge`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from anomalib_folder_ext.cli.edge import install_excepthook, one_line_message, stop_for
from anomalib_folder_ext.cli.parser import build_parser
from anomalib_folder_ext.errors import BATCHES_COMMAND, CALIBRATE_COMMAND, PREDICT_COMMAND, WATCH_COMMAND, Terms


def run_demo(options: argparse.Namespace) -> int:
    import os

    from anomalib_folder_ext.console import quiet_dependencies

    quiet_dependencies()  # before anomalib's imports warn
    from anomalib_folder_ext.tools import demo

    root = (options.dir or demo.default_demo_dir()).resolve()
    # Before anomalib (and matplotlib) load: their caches, the random teacher included, stay in the demo dir.
    os.environ["XDG_CACHE_HOME"] = str(root / "cache")
    assets = demo.DemoAssets(root)
    if options.action in {"run", "build"}:
        assets = demo.build(root, force=options.rebuild)
    if options.action == "run":
        from anomalib_folder_ext.models.checkpoint import read_checkpoint
        from anomalib_folder_ext.run.spec import RunSpec
        from anomalib_folder_ext.run.translate import anomalib_predict_args

        spec = RunSpec(model_path=assets.checkpoint, folder_path=assets.predict_folder, output_dir=options.output_dir)
        spec = spec.with_changes(overwrite=True)  # the demo's own results: replaced
        status = _ended_here(PREDICT_COMMAND, _as_the_anomalib_command(PREDICT_COMMAND).run_anomalib,
                             anomalib_predict_args(spec, read_checkpoint(assets.checkpoint)), PREDICT_COMMAND)
        if status:
            return status
    if options.action in {"run", "score"}:
        if not (Path(options.output_dir) / "results.csv").is_file():
            print(f"anomalib-folder: error: {options.output_dir}/results.csv: no demo results; run the demo first",
                  file=sys.stderr)
            return 2
        scores = demo.evaluate(options.output_dir, assets.mask_folder)
        print(f"demo results : {Path(options.output_dir).resolve()} ({scores['images']} images)")
        print("  maps       : *_anomaly.npy, *_anomaly.png; summary: results.csv, results_summary.txt")
        print(f"  image AUROC: {scores['image_auroc']:.3f}   pixel AUROC: {scores['pixel_auroc']:.3f}")
        print("  (a demo model: random teacher, trained briefly on texture crops; for real use pass your own checkpoint)")
    return 0


def run_split(options: argparse.Namespace) -> int:
    from anomalib_folder_ext.tools.split import CONFIGS_DIR, PLAN_NAME, split_folder

    result = split_folder(options.source, options.out, options.size, options.mode, options.extensions, options.recursive)
    root, counts = result.root, result.batches
    if result.placed == 0:
        print(f"{root}: already split ({len(result.plan)} images in {len(counts)} batch folders); nothing changed")
    else:
        print(f"split {len(result.plan)} images of {Path(options.source).resolve()} into {len(counts)} batch folders "
              f"({options.mode}) under {root}:")
        for batch, count in counts.items():
            print(f"  {batch}  {count} images")
    print(f"  image -> batch: {root / PLAN_NAME}; override configs: {root / CONFIGS_DIR}/batch_*.yaml")
    print(f"  next: anomalib-folder batches {root} --model_path model.ckpt")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """The command; its exit status (0, 2 input, 3 no image predicted, 4 a rank lost, 130 Ctrl-C)."""
    parser = build_parser()
    options, passthrough = parser.parse_known_args(argv)
    import os

    from anomalib_folder_ext.console import VERBOSE_ENV, catch_ctrl_c, quiet_torch_logs

    if getattr(options, "verbose", False):
        os.environ[VERBOSE_ENV] = "1"  # also for DDP ranks, which re-run this command
    quiet_torch_logs()
    terms = {"batches": BATCHES_COMMAND, "calibrate": CALIBRATE_COMMAND, "watch": WATCH_COMMAND}.get(options.command,
                                                                                                 PREDICT_COMMAND)
    install_excepthook(terms)  # this command's edge, for what escapes below (Ctrl-C while importing)
    catch_ctrl_c()  # a Ctrl-C that Python drops (during a fork) still ends the run
    if options.command in {"demo", "split", "export", "relabel"} and passthrough:
        parser.error(f"unrecognized arguments: {' '.join(passthrough)}")
    if options.command == "demo":
        return run_demo(options)
    spec = None
    if options.command in {"predict", "batches", "watch"}:
        from anomalib_folder_ext.errors import InputError
        from anomalib_folder_ext.options import watch_docs
        from anomalib_folder_ext.run.translate import spec_from_flags

        if options.command == "predict" and options.resume and options.overwrite:
            parser.error("--resume True continues the earlier run, --overwrite True replaces it: choose one")
        if options.command == "watch":
            options.resume = False  # a watch continues its output dir unless told to replace it
        elif options.resume is None:  # predict: off; predict --batches: on unless --overwrite
            options.resume = bool(options.batches) and not options.overwrite
        try:
            spec = spec_from_flags(options)
            if options.command == "watch":
                spec = spec.with_changes(**{name: getattr(options, name) for name in watch_docs()})
        except InputError as exc:
            problem = str(exc)
            for name in ("vmin", "vmax", "normalization", "overlay_alpha"):  # the flags' spelling
                problem = problem.replace(name, f"--{name}")
            parser.error(problem)
    with_configs = "--config" in passthrough or any(arg.startswith("--config=") for arg in passthrough)
    if options.command == "predict":
        if not options.model_path and not with_configs:
            parser.error("predict needs --model_path (with --folder_path or --batch_folder), or anomalib configs (--config)")
        if options.model_path and not options.batches and spec.folder is None:
            parser.error("predict needs --folder_path / --custom_folder or --batch_folder (or --batches)")
    try:
        if options.command == "split":
            return run_split(options)
        if options.command == "export":
            from anomalib_folder_ext.console import quiet_dependencies

            quiet_dependencies()  # before anomalib's imports warn
            from anomalib_folder_ext.run.export import run_export

            return run_export(options)
        if options.command == "calibrate":
            return _calibrate(options, passthrough, terms)
        if options.command == "watch":
            return _watch(options, spec, passthrough, terms)
        if options.command == "relabel":
            from anomalib_folder_ext.run.relabel import relabel

            relabel(options.path, options.calibration, options.threshold, options.pixel_threshold, options.uncertain_below)
            return 0
        return _predict(options, spec, passthrough, terms)
    except (ValueError, OSError) as exc:  # InputError is a ValueError
        print(f"anomalib-folder: error: {_message(exc, terms)}", file=sys.stderr)
        return 2


def _predict(options: argparse.Namespace, spec: object, passthrough: list[str], terms: Terms) -> int:
    """``predict`` and ``batches``: the checks before anything loads, then the run through anomalib."""
    from anomalib_folder_ext.run import preflight
    from anomalib_folder_ext.run.translate import anomalib_predict_args, writer_flags

    output_root = Path(getattr(options, "output_root", "."))
    if options.command == "batches":
        base, jobs = preflight.root_jobs(options.root, spec, output_root, options.only, passthrough)
    elif options.batches:
        base, jobs = preflight.override_jobs(options.batches, spec, output_root, passthrough)
    elif options.model_path:
        args = anomalib_predict_args(spec, preflight.check_inputs(spec)) + list(passthrough)
    else:
        args = ["predict", *passthrough, *writer_flags(options)]
    launch = _as_the_anomalib_command(terms)
    if options.command == "batches" or options.batches:
        if options.print_config:
            launch.run_anomalib([*base, *jobs[0].args, "--print_config"], terms)
            return 0
        from anomalib_folder_ext.run.batches import run_batches

        return _ended_here(terms, run_batches, base, jobs, options.output_root, options.resume,
                           bool(getattr(options, "overwrite", False)), terms)
    if options.print_config:
        args.append("--print_config")
    return _ended_here(terms, launch.run_anomalib, args, terms)


def _watch(options: argparse.Namespace, spec: object, passthrough: list[str], terms: Terms) -> int:
    """``watch``: the checks before anything loads, then the watch through anomalib until it is stopped."""
    from anomalib_folder_ext.run import preflight
    from anomalib_folder_ext.run.translate import anomalib_predict_args

    args = anomalib_predict_args(spec, preflight.check_watch(spec), watch=True) + list(passthrough)
    launch = _as_the_anomalib_command(terms)
    if options.print_config:
        launch.run_anomalib([*args, "--print_config"], terms)
        return 0
    from anomalib_folder_ext.run.watch import run_watch

    return _ended_here(terms, run_watch, args, terms)


def _calibrate(options: argparse.Namespace, passthrough: list[str], terms: Terms) -> int:
    """``calibrate``: the checks before anything loads, the parts' runs through anomalib, the fit."""
    from anomalib_folder_ext.run.calibrate import CalibrationRequest, calibrate
    from anomalib_folder_ext.run.spec import RunSpec

    spec = RunSpec(model_path=options.model_path, image_size=options.image_size, batch_size=options.batch_size,
                   extensions=options.extensions, num_workers=options.num_workers, max_pixels=options.max_pixels,
                   accelerator=options.accelerator, devices=options.devices, precision=options.precision)
    request = CalibrationRequest(spec, options.good_folder, options.out, options.defect_folder, options.mask_folder,
                                 options.target_fpr, options.pixel_fpr, options.uncertain_fpr, options.work_dir,
                                 options.resume, tuple(passthrough))
    _as_the_anomalib_command(terms)
    return _ended_here(terms, calibrate, request, terms)


def _as_the_anomalib_command(terms: Terms):  # noqa: ANN202
    """Set up as the ``anomalib`` command sets itself up (its logging, quieted), our edge over rich's
    traceback hook; the launcher, which runs the config."""
    from anomalib_folder_ext.console import quiet_dependencies

    quiet_dependencies()  # before anomalib's own imports warn
    import anomalib.cli.cli  # noqa: F401 - installs rich's traceback hook over ours
    from anomalib.loggers import configure_logger

    from anomalib_folder_ext.run import launch

    install_excepthook(terms)  # wrap rich's: input errors raised during the run stay one line
    configure_logger()
    quiet_dependencies()  # configure_logger doubled the root handlers and reset levels
    return launch


def _ended_here(terms: Terms, run, *args) -> int:  # noqa: ANN001
    """Run anomalib; an error that stops it (an input error once it started, no image predicted, a lost rank,
    Ctrl-C) is one line and its exit status, like the checks before it; a bug keeps its traceback."""
    try:
        run(*args)
    except BaseException as exc:
        status = stop_for(exc, terms)
        if status is None:
            raise
        return status
    return 0


def _message(exc: BaseException, terms: Terms) -> str:
    if isinstance(exc, OSError) and exc.filename:
        return f"{exc.filename}: {exc.strerror or exc}"
    return one_line_message(exc, terms) or str(exc)
