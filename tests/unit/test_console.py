"""The terminal's Ctrl-C: one that Python drops (it came while a finalizer or an at-fork hook ran) is not lost."""

from __future__ import annotations

import gc
import os
import signal

import pytest

from anomalib_folder_ext import console


def test_a_ctrl_c_python_drops_is_raised_again_and_one_taken_up_is_not():
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        console.catch_ctrl_c()
        assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler

        class Finalized:
            def __del__(self) -> None:  # a KeyboardInterrupt raised in here is printed and dropped by Python
                os.kill(os.getpid(), signal.SIGINT)
                for _ in range(1000):  # the handler runs between two bytecodes
                    pass

        Finalized()
        gc.collect()
        assert console.ctrl_c_pending()
        with pytest.raises(KeyboardInterrupt):
            console.raise_dropped_ctrl_c()
        assert console.ctrl_c_pending(clear=True) and not console.ctrl_c_pending()
        console.raise_dropped_ctrl_c()  # taken up: nothing to raise
    finally:
        signal.signal(signal.SIGINT, previous)
