"""How the nodes of a job meet, and what is said when they cannot.

Node 0 listens on ``MASTER_ADDR:MASTER_PORT`` and the other nodes connect to it (torch's TCP store,
under Lightning's DDP). Two things go wrong there that torch tells badly: node 0's port is taken
(a long traceback ending in ``EADDRINUSE``), and a node that cannot reach node 0 (started first,
or told another address) waits silently until the process group's timeout, 30 minutes. The first
becomes one line at the command's edge (:func:`meeting_failure`); for the second, a waiting node
says so :data:`WAIT_LINE_AFTER_S` after the command started and every :data:`WAIT_REPEAT_S` after (:func:`say_while_waiting`).
Under ``torchrun`` the nodes meet in torchrun's own rendezvous, before this process starts.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from datetime import timedelta

WAIT_LINE_AFTER_S = 30.0  # from the command's start: its set-up before the meeting takes seconds
WAIT_REPEAT_S = 300.0
_waiting: threading.Thread | None = None


def _master() -> str:
    return f"{os.environ.get('MASTER_ADDR', '127.0.0.1')}:{os.environ.get('MASTER_PORT', '29500')}"


def meeting_failure(exc: BaseException) -> str | None:
    """The one line for torch's failure to set up the nodes' meeting point; ``None`` for anything else.

    Example:
        >>> from torch.distributed import DistNetworkError
        >>> meeting_failure(DistNetworkError("The server socket has failed to listen on any local network "
        ...     "address. port: 29555, useIpv6: false, code: -98, name: EADDRINUSE, message: address already in use"))[:58]
        'MASTER_PORT 29555 is in use on this machine (a job still r'
    """
    if not any(kind.__name__ == "DistNetworkError" for kind in type(exc).__mro__):
        return None
    text = " ".join(str(exc).split())
    if "EADDRINUSE" in text or "address already in use" in text:
        port = re.search(r"port: (\d+)", text)
        return (f"MASTER_PORT {port.group(1) if port else os.environ.get('MASTER_PORT', '')} is in use on this machine "
                "(a job still running, or another program), so node 0 cannot wait there for the other nodes; "
                "start every node with another free MASTER_PORT")
    first = text.split(". ")[0].rstrip(".")
    return (f"the nodes cannot meet at {_master()} (MASTER_ADDR:MASTER_PORT): {first}; every node names node 0's "
            "address and the same free port")


def waiting_line(node: int, waited_s: float) -> str:
    """
    >>> waiting_line(1, 30.4)[:60]
    'node 1: waiting 0:00:30 for node 0 at 127.0.0.1:29500 (MASTE'
    """
    return (f"node {node}: waiting {timedelta(seconds=round(waited_s))} for node 0 at {_master()} (MASTER_ADDR:MASTER_PORT): "
            "start the same command there with NODE_RANK=0, or check the address and port; torch gives up after "
            "30 minutes")


def node_rank() -> int:
    """This node's rank as Lightning's multi-node environment names it (``NODE_RANK``); 0 when not set."""
    try:
        return int(os.environ.get("NODE_RANK", "0") or 0)
    except ValueError:
        return 0


def say_while_waiting() -> None:
    """On a node other than node 0, start the lines said while it waits for node 0 (once per process,
    by the node's first rank only; they stop when the process group is up)."""
    global _waiting  # noqa: PLW0603 - one watch per process
    node = node_rank()
    if node == 0 or os.environ.get("LOCAL_RANK", "0") != "0" or _waiting is not None:
        return
    _waiting = threading.Thread(target=_say_until_met, args=(node,), daemon=True, name="anomalib-folder-meeting")
    _waiting.start()


def _say_until_met(node: int) -> None:
    import torch.distributed as dist

    started = time.monotonic()
    due = started + WAIT_LINE_AFTER_S
    while not (dist.is_available() and dist.is_initialized()):
        time.sleep(0.5)
        now = time.monotonic()
        if now >= due:
            print(waiting_line(node, now - started), file=sys.stderr, flush=True)
            due = now + WAIT_REPEAT_S
