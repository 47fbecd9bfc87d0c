"""The indexes built on this machine: a per-user record of {index folder: the root it was built from}.

`pir index` adds a line after each successful build; `pir serve` reads it to tell an index this user
built here from an index folder that came from elsewhere, whose index.json may name any root (`/`
included). Such a root is served only when the user names it (`pir serve INDEX --root PATH`), or when it
lies inside the index folder itself (docs/search-and-geo.md, "Serving").

The record lives in the user's state folder, not in the project or the index (an index folder cannot
vouch for itself): ``$PIR_STATE_HOME``, else ``$XDG_STATE_HOME/pir``, else ``~/.local/state/pir``.
It is a tool's file: the ``pir`` library never writes to the home folder. Writes are atomic
(pir.files.write_json) under a lock, so two `pir index` runs finishing together both land; a corrupt
file is read as empty with a note on stderr, and the next record replaces it.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from pir import files

STATE_ENV = "PIR_STATE_HOME"
RECORD = "known-indexes.json"
FORMAT = 1


def state_folder() -> Path:
    """Where pir's per-user state lives (the XDG base-directory rule, with a pir override for tests)."""
    if os.environ.get(STATE_ENV):
        return Path(os.environ[STATE_ENV])
    if os.environ.get("XDG_STATE_HOME"):
        return Path(os.environ["XDG_STATE_HOME"]) / "pir"
    return Path.home() / ".local" / "state" / "pir"


def record_path() -> Path:
    return state_folder() / RECORD


def _read(path: Path) -> dict[str, str]:
    """{resolved index folder: resolved root}; {} for a missing file, and for a corrupt one (with a note)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        print(f"pir: {path}: unreadable record of known indexes ({exc}); treating it as empty", file=sys.stderr)
        return {}
    indexes = data.get("indexes") if isinstance(data, dict) else None
    if not isinstance(indexes, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in indexes.items()):
        print(f"pir: {path}: not a record of known indexes; treating it as empty", file=sys.stderr)
        return {}
    return indexes


def known() -> dict[str, str]:
    return _read(record_path())


def record(index_dir: str | os.PathLike, root: str | os.PathLike) -> bool:
    """Note that ``index_dir`` was built from ``root`` here (both resolved). A failure to write (a read-only
    home) is a note on stderr, not an error: the index is built; `pir serve` will then ask for --root."""
    path = record_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with files.flocked(path.with_name(path.name + ".lock")):
            indexes = _read(path)
            indexes[str(Path(index_dir).resolve())] = str(Path(root).resolve())
            files.write_json(path, {"format": FORMAT, "indexes": dict(sorted(indexes.items()))})
    except OSError as exc:
        print(f"pir: could not record this index in {path} ({exc}); `pir serve` will ask for --root",
              file=sys.stderr)
        return False
    return True


def built_here(index_dir: str | os.PathLike, root: str | os.PathLike) -> bool:
    """Whether ``index_dir`` was last built from ``root`` on this machine by this user."""
    return known().get(str(Path(index_dir).resolve())) == str(Path(root).resolve())
