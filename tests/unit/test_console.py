"""The terminal's Ctrl-C: one that Python drops (it came while a finalizer or an at-fork hook ran) is not lost,
and Python's traceback for dropping it is not printed.

The SIGINT is real, so it is sent in a Python process of its own: sent to a test runner's worker, a
Ctrl-C that escapes would end the worker and, with it, every test it had still to run."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCENARIO = textwrap.dedent("""
    import gc, os, signal

    from anomalib_folder_ext import console

    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    console.catch_ctrl_c()
    assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler

    class Finalized:
        def __del__(self):  # a KeyboardInterrupt raised in here is printed and dropped by Python
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):  # the handler runs between two bytecodes
                pass

    Finalized()
    gc.collect()
    assert console.ctrl_c_pending()
    try:
        console.raise_dropped_ctrl_c()
    except KeyboardInterrupt:
        pass
    else:
        raise AssertionError("the dropped Ctrl-C was not raised again")
    assert console.ctrl_c_pending(clear=True) and not console.ctrl_c_pending()
    console.raise_dropped_ctrl_c()  # taken up: nothing to raise
    print("taken up once")
""")


def test_a_ctrl_c_python_drops_is_raised_again_and_one_taken_up_is_not():
    done = subprocess.run([sys.executable, "-c", SCENARIO], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "taken up once"
    assert done.stderr == ""  # no "Exception ignored in ...": the Ctrl-C is not lost, so no traceback for it
