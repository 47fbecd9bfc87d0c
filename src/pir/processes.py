"""Whether a process, named by its host and pid, is still running.

The closing of orphan MLflow runs (pir.pipeline.tracking) records ``(host, pid)`` for a live stage process
and later asks whether it is gone.
"""

from __future__ import annotations

import os
import socket


def this_host() -> str:
    return socket.gethostname()


def alive(pid: int) -> bool:
    """Whether process ``pid`` on this host exists (owned by any user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:      # alive, owned by another user
        return True
    return True
