"""Weights from the Hugging Face Hub: ``hf-hub:ORG/REPO[/FILE][@REVISION]`` ids, resolved through
huggingface_hub's cache (docs/clip-family.md, "Weights from the Hugging Face Hub").

An id may stand wherever a weights path is accepted: ``model.clip_weights``, ``model.vision_pretrained``,
``model.text_model`` (with ``text_pretrained``) and the tokenizer that follows it, ``data.tokenizer``,
``scene_prior.pretrained``, ``evaluate.checkpoint`` and the ``--checkpoint`` of ``pir index``/``search``.
It is open_clip's convention (``hf-hub:ORG/REPO``: the repository) extended with a file inside the
repository and a revision (branch, tag or commit): ``hf-hub:chendelong/RemoteCLIP/RemoteCLIP-ViT-B-32.pt``,
``hf-hub:Zilun/GeoRSCLIP/ckpt/RS5M_ViT-B-32.pt@main``. ``resolve`` turns an id into a local path in the
cache (downloaded when online; with ``HF_HUB_OFFLINE=1`` only the cache is read) and the commit it
came from; callers then read the path with the same safe loaders as a local file.

Which commit each id resolved to belongs to the run: a stage collects the resolutions with
``recording()`` around the code that loads weights (they happen deep inside model constructors) and
hands them to its report (``report``) and run (the pipeline's tags: pir.pipeline.tracking.hub_tags).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Sequence

from pir.errors import first_line

PREFIX = "hf-hub:"
FORM = "hf-hub:ORG/REPO[/FILE][@REVISION]"
# The Hub's own rules for an owner or repository name: letters, digits, "-", "_", "." (at most 96),
# neither starting nor ending with "-" or ".", no "--" or "..".
_NAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_])?")
# A branch, tag or commit; "/" allowed (refs/pr/1), ".." and "@" not.
_REVISION = re.compile(r"[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)*")
_TRUE = ("1", "ON", "YES", "TRUE")


@dataclass(frozen=True)
class HubId:
    """A parsed id: ``repo_id`` ("ORG/REPO"), ``filename`` ("" = the whole repository, or a
    "/"-separated path inside it), ``revision`` ("" = the default branch)."""
    repo_id: str
    filename: str = ""
    revision: str = ""

    def __str__(self) -> str:
        return (f"{PREFIX}{self.repo_id}" + (f"/{self.filename}" if self.filename else "")
                + (f"@{self.revision}" if self.revision else ""))


@dataclass(frozen=True)
class Resolved:
    """Where an id lies in the cache: ``path`` (the file, or the snapshot folder / a folder inside it)
    and the ``commit`` it was resolved to (40 hex digits)."""
    id: str
    path: Path
    commit: str


def is_hub_id(value: object) -> bool:
    """Whether ``value`` (a string or path) is written as a Hub id."""
    return isinstance(value, (str, os.PathLike)) and os.fspath(value).startswith(PREFIX)


def _label(spec: str, what: str) -> str:
    shown = spec if spec.isprintable() else repr(spec)   # an error stays one line
    return f"{what} = {shown}" if what else shown


def parse(spec: str | os.PathLike, what: str = "") -> HubId:
    """``hf-hub:ORG/REPO[/FILE][@REVISION]`` -> HubId, or a one-line ValueError naming ``what`` and the id.

    The FILE part must stay inside the repository: empty parts, ``.``, ``..`` and backslashes are refused,
    and it can never be absolute (a leading "/" reads as an empty owner)."""
    spec = os.fspath(spec)
    if not spec.startswith(PREFIX):
        raise ValueError(f"{_label(spec, what)}: not a Hub id (expected {FORM})")
    body, at, revision = spec[len(PREFIX):].rpartition("@")
    if not at:
        body, revision = revision, ""

    def refuse(problem: str) -> ValueError:
        return ValueError(f"{_label(spec, what)}: {problem} (expected {FORM})")

    if any(ord(c) < 32 or c == "\x7f" for c in spec):
        raise refuse("control characters in the id")
    if at and not revision:
        raise refuse("empty revision after '@'")
    if revision and (not _REVISION.fullmatch(revision) or ".." in revision):
        raise refuse(f"bad revision {revision!r}")
    parts = body.split("/")
    if len(parts) < 2:
        raise refuse("no repository: name it as ORG/REPO")
    owner, name, file_parts = parts[0], parts[1], parts[2:]
    for label, part in (("owner", owner), ("repository", name)):
        if not _NAME.fullmatch(part) or "--" in part or ".." in part:
            raise refuse(f"bad {label} name {part!r}")
    for part in file_parts:
        if part in ("", ".", ".."):
            raise refuse("the file path has an empty, '.' or '..' part: it must stay inside the repository")
        if "\\" in part:
            raise refuse("a backslash in the file path (use '/')")
    return HubId(f"{owner}/{name}", "/".join(file_parts), revision)


# --------------------------------------------------------------------------- the cache

def offline() -> bool:
    """HF_HUB_OFFLINE as huggingface_hub read it at import, or as the environment says now (a process
    that imported huggingface_hub before the variable was set)."""
    from huggingface_hub import constants
    return bool(constants.HF_HUB_OFFLINE) or os.environ.get("HF_HUB_OFFLINE", "").upper() in _TRUE


def cache_dir() -> str:
    """The hub cache huggingface_hub uses: HF_HUB_CACHE as the environment says now, else its default
    (HF_HOME/hub, ~/.cache/huggingface/hub)."""
    from huggingface_hub import constants
    return os.path.expanduser(os.environ.get("HF_HUB_CACHE") or constants.HF_HUB_CACHE)


def _download(hub_id: HubId, folder: bool, folder_files: Sequence[str] | None) -> str:
    """huggingface_hub's own resolution: ``hf_hub_download`` for a file, ``snapshot_download`` for the
    repository or a folder inside it (only that folder's files, or ``folder_files`` for a whole one)."""
    from huggingface_hub import hf_hub_download, snapshot_download

    common = {"revision": hub_id.revision or None, "cache_dir": cache_dir(), "local_files_only": offline()}
    if hub_id.filename and not folder:
        return hf_hub_download(hub_id.repo_id, hub_id.filename, **common)
    patterns = [f"{hub_id.filename}/*"] if hub_id.filename else (list(folder_files) if folder_files else None)
    return snapshot_download(hub_id.repo_id, allow_patterns=patterns, **common)


def _fetch_command(hub_id: HubId, folder: bool) -> str:
    """The `hf download` line that puts the id into the cache."""
    files = (f"--include '{hub_id.filename}/*'" if folder else hub_id.filename) if hub_id.filename else ""
    return " ".join(filter(None, ("hf download", hub_id.repo_id, files,
                                  f"--revision {hub_id.revision}" if hub_id.revision else "")))


def _one_line_error(exc: Exception, spec: str, hub_id: HubId, what: str, folder: bool) -> Exception:
    """huggingface_hub's multi-line errors as one line naming the id (and, for a miss, the cache)."""
    from huggingface_hub import errors

    label = _label(spec, what)
    if isinstance(exc, errors.LocalEntryNotFoundError):
        why = "HF_HUB_OFFLINE is set" if offline() else "the Hub could not be reached"
        fetch = _fetch_command(hub_id, folder)
        return FileNotFoundError(f"{label}: not in the Hugging Face cache ({cache_dir()}) and {why}; fetch it "
                                 f"once with network access (`{fetch}`), or set HF_HUB_CACHE to a cache that holds it")
    if isinstance(exc, errors.RepositoryNotFoundError):   # gated repositories too
        return FileNotFoundError(f"{label}: no repository {hub_id.repo_id} on the Hub (or it is private or gated: "
                                 "log in with `hf auth login`)")
    if isinstance(exc, errors.RevisionNotFoundError):
        return FileNotFoundError(f"{label}: no revision {hub_id.revision!r} in {hub_id.repo_id}")
    if isinstance(exc, errors.EntryNotFoundError):
        return FileNotFoundError(f"{label}: no file {hub_id.filename!r} in {hub_id.repo_id}")
    return ValueError(f"{label}: cannot resolve on the Hugging Face Hub ({first_line(exc, 200)})")


def _snapshot_of(local: Path, hub_id: HubId, folder: bool) -> Path:
    """The snapshot folder ``local`` lies in (``snapshots/<commit>``): for a file, its parent as many
    levels up as the FILE part is deep."""
    depth = len(hub_id.filename.split("/")) if hub_id.filename and not folder else 0
    return local.parents[depth - 1] if depth else local


def _check_inside(target: Path, snapshot: Path, label: str) -> None:
    """``target`` (links followed: snapshot files link to ``blobs/``) lies in its repository's folder of
    the cache (``models--ORG--REPO``). parse refused '..' and huggingface_hub checks names too: this
    checks the cache layout rather than assuming it."""
    if snapshot.parent.name != "snapshots":
        raise ValueError(f"{label}: not in a Hugging Face cache layout ({snapshot})")
    repo_folder = os.path.realpath(snapshot.parent.parent)
    real = os.path.realpath(target)
    if real != repo_folder and not real.startswith(repo_folder + os.sep):
        raise ValueError(f"{label}: resolves outside its repository in the cache ({real})")


def resolve(spec: str | os.PathLike, what: str = "", folder: bool = False,
            folder_files: Sequence[str] | None = None) -> Resolved:
    """The local path and commit of a Hub id (see the module doc); recorded by every open ``recording()``.

    An id with a FILE part resolves to that file (``folder=True``: to that folder of the snapshot);
    one without, to the snapshot folder of the whole repository (``folder_files``: only those names are
    fetched). Errors are one line naming ``what`` and the id: a malformed id (ValueError); an id absent
    from the cache when offline, or absent on the Hub (FileNotFoundError).
    """
    spec = os.fspath(spec)
    hub_id = parse(spec, what)
    label = _label(spec, what)
    try:
        local = Path(_download(hub_id, folder, folder_files))
    except Exception as exc:  # huggingface_hub raises many types, with long messages
        raise _one_line_error(exc, spec, hub_id, what, folder) from None
    snapshot = _snapshot_of(local, hub_id, folder)
    target = snapshot.joinpath(*hub_id.filename.split("/")) if hub_id.filename else snapshot
    _check_inside(target, snapshot, label)
    want_file = bool(hub_id.filename) and not folder
    if not (target.is_file() if want_file else target.is_dir()):
        raise FileNotFoundError(f"{label}: no {'file' if want_file else 'folder'} {hub_id.filename or '.'} "
                                f"in the cached snapshot {snapshot}")
    resolved = Resolved(spec, target, snapshot.name)
    for found in _recordings.get():
        found[what or spec] = resolved
    return resolved


def local_path(value: str | os.PathLike, what: str = "", folder: bool = False,
               folder_files: Sequence[str] | None = None) -> Path:
    """``value`` as a local path: a Hub id resolved (``resolve``), anything else as it is (~ expanded)."""
    if is_hub_id(value):
        return resolve(value, what, folder=folder, folder_files=folder_files).path
    return Path(value).expanduser()


# --------------------------------------------------------------------------- what a run resolved

_recordings: contextvars.ContextVar[tuple[dict[str, Resolved], ...]] = contextvars.ContextVar(
    "pir_hub_recordings", default=())


@contextlib.contextmanager
def recording() -> Iterator[dict[str, Resolved]]:
    """Collect the ids resolved inside the block, by the setting that named them ({what: Resolved}).

    A stage opens one around the code that loads weights and hands what it holds to its report and
    MLflow run: the resolutions happen inside model constructors, which return models, not records."""
    found: dict[str, Resolved] = {}
    token = _recordings.set((*_recordings.get(), found))
    try:
        yield found
    finally:
        _recordings.reset(token)


def report(found: Mapping[str, Resolved]) -> dict[str, str]:
    """{id: commit} for a stage's report (JSON)."""
    return {resolved.id: resolved.commit for resolved in found.values()}
