"""Headless Chromium for the browser tests: the rendered DOM of a page and its screenshot.

Debian's `chromium` package (`.ci/run` installs it). Where no browser is found the
tests skip with the reason; they never fake a page.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

# The machine's network is closed: without these, Chromium keeps trying Google's hosts
# at start-up. --no-sandbox because CI runs as root.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


def chromium() -> str:
    """Path of a Chromium binary, or skip the calling test with the reason."""
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    pytest.skip(f"no Chromium found (tried {', '.join(CANDIDATES)}); on Debian: apt-get install chromium")


def _run(url: str, extra: list[str], *, wait_ms: int, timeout_s: float) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        command = [chromium(), *FLAGS, f"--user-data-dir={profile}",
                   f"--virtual-time-budget={wait_ms}", *extra, url]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)


def dump_dom(url: str, *, wait_ms: int = 10_000, timeout_s: float = 120, extra: list[str] | tuple[str, ...] = ()) -> str:
    """The DOM after the page's scripts ran for `wait_ms` of virtual time (fetches included); `extra`: more
    Chromium flags (e.g. --log-net-log=FILE, every request the browser made)."""
    done = _run(url, ["--dump-dom", *extra], wait_ms=wait_ms, timeout_s=timeout_s)
    if done.returncode != 0 or not done.stdout.strip():
        raise AssertionError(f"chromium --dump-dom {url} failed ({done.returncode}): {done.stderr[-2000:]}")
    return done.stdout


def screenshot(url: str, path: Path, *, size: tuple[int, int] = (1280, 900), wait_ms: int = 10_000,
               timeout_s: float = 120) -> Path:
    """A PNG of the rendered page at `size` (width, height)."""
    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    done = _run(url, [f"--screenshot={path}", f"--window-size={size[0]},{size[1]}"],
                wait_ms=wait_ms, timeout_s=timeout_s)
    if done.returncode != 0 or not path.is_file():
        raise AssertionError(f"chromium --screenshot {url} failed ({done.returncode}): {done.stderr[-2000:]}")
    return path
