"""How uncaught errors are shown: one line for input errors, the normal traceback for bugs."""

import subprocess
import sys

from anomalib_folder_ext.errors import FolderInputError, one_line_message


def test_input_errors_become_one_line_and_bugs_do_not():
    assert one_line_message(FolderInputError("folder_path /x: no such folder")) == "folder_path /x: no such folder"
    assert one_line_message(FileNotFoundError("Checkpoint file not found: /m.ckpt")) == (
        "ckpt_path: Checkpoint file not found: /m.ckpt"
    )
    assert one_line_message(RuntimeError("Error(s) in loading state_dict for EfficientAd:\n size mismatch")).startswith(
        "ckpt_path: the checkpoint's weights do not fit"
    )
    assert one_line_message(KeyError("bug")) is None
    assert one_line_message(RuntimeError("Error(s) in loading state_dict for Padim")) is None


def test_uncaught_input_error_prints_one_line_and_exits_2_after_the_exit_handlers():
    code = ("import atexit, anomalib_folder_ext.errors as e; e.install_excepthook(); "
            "atexit.register(lambda: print('exit handler ran')); "
            "raise e.FolderInputError('folder_path /x: no such folder')")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 2 and result.stdout == "exit handler ran\n"
    assert result.stderr == "error: folder_path /x: no such folder\n"


def test_uncaught_bug_keeps_its_traceback():
    code = "import anomalib_folder_ext; raise KeyError('bug')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 1 and "Traceback" in result.stderr and "KeyError: 'bug'" in result.stderr


def test_ctrl_c_outside_a_predict_loop_is_one_line_and_exits_by_sigint():
    code = "import anomalib_folder_ext.errors as e; e.install_excepthook(); raise KeyboardInterrupt"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode in {-2, 130}  # killed by SIGINT, as Python does for an unhandled Ctrl-C: the shell shows 130
    assert result.stderr == "interrupted: finished images are kept; run again with --resume True to continue\n"
