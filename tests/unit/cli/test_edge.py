"""How errors are shown: one line for input errors at a command's edge, the normal traceback for bugs, and
nothing changed in a process that only imports the package."""

import subprocess
import sys

from anomalib_folder_ext.cli.edge import one_line_message
from anomalib_folder_ext.errors import ANOMALIB_PREDICT, PREDICT_COMMAND, WRITER, FolderInputError, OutputDirError


def test_input_errors_become_one_line_and_bugs_do_not():
    assert one_line_message(FolderInputError("folder_path /x: no such folder")) == "folder_path /x: no such folder"
    assert one_line_message(FileNotFoundError("Checkpoint file not found: /m.ckpt")) == (
        "ckpt_path: Checkpoint file not found: /m.ckpt"
    )
    assert one_line_message(RuntimeError("Error(s) in loading state_dict for EfficientAd:\n size mismatch")).startswith(
        "ckpt_path: the checkpoint's weights do not fit"
    )
    torch_says = ('Error(s) in loading state_dict for EfficientAd:\n\tMissing key(s) in state_dict: "model.ae.a", '
                  '"model.ae.b". \n\tsize mismatch for model.student.w: copying a param with shape [1]')
    assert "(missing model.ae (2 tensors); of another shape: model.student (1 tensor)); set model.init_args" in (
        one_line_message(RuntimeError(torch_says), ANOMALIB_PREDICT))
    assert one_line_message(RuntimeError(torch_says), PREDICT_COMMAND).startswith(  # its settings came from the file
        "model_path: the checkpoint's weights do not fit the EfficientAd its own settings describe (missing model.ae")
    assert one_line_message(KeyError("bug")) is None
    assert one_line_message(RuntimeError("Error(s) in loading state_dict for Padim")) is None


def test_a_message_names_the_option_as_each_caller_spells_it():
    from anomalib_folder_ext.errors import option_hint

    error = OutputDirError(f"output_dir out holds a run; to replace it: {option_hint('overwrite')}")
    assert str(error) == "output_dir out holds a run; to replace it: AnomalyMapWriter(overwrite=True)"
    assert error.option == "output_dir" and error.terms is WRITER and error.exit_status == 2
    assert one_line_message(error, PREDICT_COMMAND) == "output_dir out holds a run; to replace it: --overwrite True"
    assert one_line_message(error, ANOMALIB_PREDICT).endswith("--trainer.callbacks.init_args.overwrite true")


def test_importing_the_package_changes_no_hook_and_loads_no_model_code():
    """The package and the command's start: no hook, no logging set up, not even torch (a bad path costs a line)."""
    code = ("import logging, sys; hook, handlers = sys.excepthook, list(logging.getLogger().handlers); "
            "import anomalib_folder_ext, anomalib_folder_ext.cli, anomalib_folder_ext.images, anomalib_folder_ext.models; "
            "print(sys.excepthook is hook, logging.getLogger().handlers == handlers, 'torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and result.stdout.split() == ["True", "True", "False"], result.stderr


def test_uncaught_input_error_prints_one_line_and_exits_2_after_the_exit_handlers():
    code = ("import atexit, anomalib_folder_ext.errors as e, anomalib_folder_ext.cli.edge as edge; "
            "edge.install_excepthook(e.PREDICT_COMMAND); atexit.register(lambda: print('exit handler ran')); "
            "raise e.FolderInputError('folder_path /x: no such folder')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 2 and result.stdout == "exit handler ran\n"
    assert result.stderr == "error: folder_path /x: no such folder\n"


def test_uncaught_bug_keeps_its_traceback():
    code = ("import anomalib_folder_ext.errors as e, anomalib_folder_ext.cli.edge as edge; "
            "edge.install_excepthook(e.PREDICT_COMMAND); raise KeyError('bug')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 1 and "Traceback" in result.stderr and "KeyError: 'bug'" in result.stderr


def test_ctrl_c_outside_a_predict_loop_is_one_line_and_exits_by_sigint():
    code = ("import anomalib_folder_ext.errors as e, anomalib_folder_ext.cli.edge as edge; "
            "edge.install_excepthook(e.PREDICT_COMMAND); raise KeyboardInterrupt")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode in {-2, 130}  # killed by SIGINT, as Python does for an unhandled Ctrl-C: the shell shows 130
    assert result.stderr == "interrupted: finished images are kept; run again with --resume True to continue\n"
