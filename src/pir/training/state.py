"""Resumable training state, keyed by everything that determines the run.

DVC deletes a stage's ordinary outputs before rerunning it, so the state lives in a
``persist: true`` folder. A run's state sits in ``<state_root>/<key>/`` where ``key``
hashes the params that affect training and the identity of its inputs; a run with
different params never sees another run's state, and stale keys are deleted.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from pir import files

STATE_FILE = "state.pt"
META_FILE = "meta.json"       # small sidecar: completed epoch and logger run id, readable without torch.load
BEST_FILE = "best.pt"


def file_digest(path: str | Path) -> str:
    """sha256 of a file's bytes, or "absent" (so a missing optional input is part of the key too)."""
    path = Path(path)
    return files.sha256_file(path) if path.is_file() else "absent"


def run_key(params: Mapping[str, Any], inputs: Mapping[str, str]) -> str:
    """16 hex chars identifying a run: its training params and the digests of its input files."""
    blob = json.dumps({"params": params, "inputs": dict(inputs)}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def capture_rng(loader_generator: torch.Generator | None = None) -> dict[str, Any]:
    """Every RNG the next epoch may draw from, as tensors/ints (loadable with weights_only=True)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]],
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if loader_generator is not None:
        state["loader"] = loader_generator.get_state()
    return state


def restore_rng(state: Mapping[str, Any], loader_generator: torch.Generator | None = None) -> None:
    torch.set_rng_state(state["torch"])
    numpy_state = state["numpy"]
    np.random.set_state((numpy_state["kind"], numpy_state["keys"].numpy().astype(np.uint32), numpy_state["pos"],
                         numpy_state["has_gauss"], numpy_state["gauss"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "loader" in state and loader_generator is not None:
        loader_generator.set_state(state["loader"])


class TrainState:
    """The per-key state folder: ``state.pt`` (last completed epoch) and ``best.pt`` (best checkpoint)."""

    def __init__(self, root: str | Path, key: str):
        self.root = Path(root)
        self.key = key
        self.dir = self.root / key

    @property
    def state_path(self) -> Path:
        return self.dir / STATE_FILE

    @property
    def best_path(self) -> Path:
        return self.dir / BEST_FILE

    def prune_stale(self) -> list[str]:
        """Delete every other key's state (a params change makes it unusable); the names removed."""
        if not self.root.is_dir():
            return []
        stale = [p for p in self.root.iterdir() if p.name != self.key and not p.name.startswith(".")]
        for path in stale:
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        return sorted(p.name for p in stale)

    def load(self) -> dict[str, Any] | None:
        """The saved state of this key, or None. A file of another key (hash clash, copy) is ignored."""
        if not self.state_path.is_file():
            return None
        payload = files.load_torch(self.state_path)
        return payload if payload.get("key") == self.key else None

    def save(self, payload: dict[str, Any]) -> None:
        files.save_torch(self.state_path, {**payload, "key": self.key})
        files.write_json(self.dir / META_FILE, {"key": self.key, "epoch": payload.get("epoch"),
                                             "logger_run_id": payload.get("logger_run_id")})

    def logger_run_id(self) -> str | None:
        """The run a previous, interrupted attempt of this run logged into (``EpochLogger.run_id``: the
        stage's MLflow run), to continue it."""
        try:
            meta = json.loads((self.dir / META_FILE).read_text())
        except (OSError, ValueError):
            return None
        return meta.get("logger_run_id") if meta.get("key") == self.key else None

    def clear(self) -> None:
        """Forget this run once its outputs are written: a later rerun (e.g. after a code change) starts fresh."""
        shutil.rmtree(self.dir, ignore_errors=True)
