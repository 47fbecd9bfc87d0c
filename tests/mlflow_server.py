"""The real `mlflow server` over a project's SQLite store, on a free loopback port, for tests."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

from pir.pipeline import tracking


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def mlflow_rest(base_url: str, path: str, body: dict) -> dict:
    """POST ``body`` to the REST endpoint ``path`` (``/api/2.0/mlflow/...``); the decoded answer."""
    request = urllib.request.Request(f"{base_url}{path}", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def _wait_until_healthy(base_url: str, server: subprocess.Popen, timeout_s: float) -> None:
    deadline = time.time() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(f"{base_url}/health", timeout=2):
                return
        except OSError:
            if server.poll() is not None:
                raise AssertionError(f"mlflow server exited with {server.returncode} before answering") from None
            if time.time() > deadline:
                raise AssertionError(f"mlflow server did not answer on {base_url} within {timeout_s:.0f} s") from None
            time.sleep(0.25)


class MlflowServer:
    """A started server; ``url()`` waits until it answers (start it early, use it late)."""

    def __init__(self, process: subprocess.Popen, base_url: str, timeout_s: float):
        self.process, self.base_url, self.timeout_s = process, base_url, timeout_s
        self._ready = False

    def url(self) -> str:
        if not self._ready:
            _wait_until_healthy(self.base_url, self.process, self.timeout_s)
            self._ready = True
        return self.base_url


@contextlib.contextmanager
def mlflow_server(store_root: str | os.PathLike, timeout_s: float = 120) -> Iterator[MlflowServer]:
    """Serve the store of ``store_root`` (pir.pipeline.tracking's URI) with one worker.

    Create the store first (tracking.ensure_experiment): a server and a client migrating a fresh
    SQLite file at once race.
    """
    port = free_port()
    # The job runner (GenAI scoring, trace archival) is a second process tests never use.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    process = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
         "--backend-store-uri", tracking.tracking_uri(store_root), "--workers", "1"],
        cwd=Path(store_root), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield MlflowServer(process, f"http://127.0.0.1:{port}", timeout_s)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)
