"""A real huggingface_hub cache on disk, built by the tests (nothing is downloaded): the layout
huggingface_hub itself writes, so ids resolve through its own API with HF_HUB_OFFLINE=1.

    <cache>/models--ORG--REPO/refs/<branch>               the commit the branch points at
    <cache>/models--ORG--REPO/blobs/<sha256>              each file's bytes
    <cache>/models--ORG--REPO/snapshots/<commit>/<FILE>   relative links to the blobs
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pytest


def commit_of(repo_id: str, files: dict[str, bytes], branch: str = "main") -> str:
    """A 40-hex commit id that depends on the repository, the branch and the files."""
    digest = hashlib.sha1(f"{repo_id}@{branch}".encode())
    for name in sorted(files):
        digest.update(name.encode() + b"\0" + hashlib.sha1(files[name]).digest())
    return digest.hexdigest()


def add_snapshot(cache: Path, repo_id: str, files: dict[str, bytes], branch: str | None = "main",
                 commit: str | None = None) -> str:
    """Store ``files`` (repository path -> bytes) as one commit of ``repo_id``; ``branch`` (None: no
    ref, reachable by commit only) points at it. Returns the commit."""
    commit = commit or commit_of(repo_id, files, branch or "")
    storage = cache / f"models--{repo_id.replace('/', '--')}"
    (storage / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot = storage / "snapshots" / commit
    for name, data in files.items():
        blob = storage / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = snapshot.joinpath(*name.split("/"))
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    if branch:
        (storage / "refs").mkdir(exist_ok=True)
        (storage / "refs" / branch).write_text(commit)
    return commit


def add_folder(cache: Path, repo_id: str, folder: Path, branch: str | None = "main") -> str:
    """Every file under ``folder`` as one commit of ``repo_id`` (an exported folder pushed as it is)."""
    files = {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}
    return add_snapshot(cache, repo_id, files, branch)


@pytest.fixture
def hub_cache(tmp_path, monkeypatch) -> Path:
    """An empty hub cache as HF_HUB_CACHE, offline (HF_HUB_OFFLINE=1): only what a test stores resolves."""
    cache = tmp_path / "hf-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    yield cache
    shutil.rmtree(cache, ignore_errors=True)
