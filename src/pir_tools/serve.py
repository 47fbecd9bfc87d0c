"""``pir serve INDEX_DIR [--port N] [--root PATH] [--exact] [--basemap URL]``: a local search page over an
index, on 127.0.0.1 only.

Flask with one Jinja template, its scripts and stylesheets (package data under pir_tools/templates and
pir_tools/static, Leaflet vendored there; nothing inline, so the page runs under a self-only
Content-Security-Policy) and no frontend build. Routes:

    GET /                          the page (?q=...&top=K&scene=S run a search on load; #hit=N opens hit N
                                   on the map); with a map when the index has georeferenced rows
    GET /api/info                  {"images", "georeferenced", "rasters": [{"path", "quicklook"}], "basemap"}
    GET /api/search?q=...&top=K    [{"path", "window", "score", "scene", "thumb": url, "image": url,
                                   "footprint": [[lon, lat], ...] or null, "quicklook": url or null}, ...],
                                   best first; &like=PATH[&window=W] searches by an indexed image, &scene=S filters
    GET /thumb/PATH[?window=W]     the thumbnail cached at index time (never decodes the full tile)
    GET /image/PATH                the original file, while it still is the file that was indexed
    GET /image/PATH?window=W       that window of it (an indexed one) as PNG, read as the index read it
    GET /api/quicklook/PATH        {"image": url, "bounds": [west, south, east, north], "width", "height"}
    GET /quicklook/PATH            the scene's quicklook warped to Web Mercator, PNG (pir_tools.serve_map)
    GET /static/...                the page's scripts and styles, Leaflet's under static/leaflet/

An index folder is untrusted input: its index.json may name any root (``/`` included) and its manifest
any paths (docs/search-and-geo.md, "Serving"). So:

- PATH is the manifest's root-relative path. Only indexed paths are served, and only when they resolve
  (links followed) inside the root: anything else (../, absolute, encoded forms, links out of the root)
  is a 404. An original is sent only while its size and sha256 equal its manifest row (else 409), so an
  index from elsewhere cannot read a file whose bytes its author does not already have, and a file
  swapped after indexing is not sent. Thumbnails are sent only from inside the index folder.
- The index's own root is served only when this user built the index from it on this machine
  (pir_tools.known_indexes, written by `pir index`) or when it lies inside the index folder; any other
  root must be named: ``--root PATH`` (then the manifest's paths are served relative to PATH).
- Only Host headers naming the bound address answer (127.0.0.1:PORT, localhost:PORT, [::1]:PORT), so a
  page elsewhere whose name is rebound to 127.0.0.1 (DNS rebinding) gets 421 and reads nothing.
- Every response carries a self-only Content-Security-Policy, nosniff, frame and referrer headers; with
  ``--basemap URL`` its img-src also allows that URL's origin, the only one the page then loads from.
- Window crops and quicklooks are made from a descriptor whose bytes were checked like /image's (409 else),
  for (path, window) pairs and georeferenced files the manifest lists; quicklooks are kept in memory only.
- An index's ANN file (``ann.faiss``, pir.search.ann) is parsed by faiss's C++ reader: read only when its
  size and sha256 equal what index.json records, and not at all with ``--exact`` (docs/security.md).
"""

from __future__ import annotations

import argparse
import os
import re
import stat
import sys
import threading
import time
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Iterable
from urllib.parse import quote

from pir import files
from pir_tools import serve_map

if TYPE_CHECKING:   # annotations only; create_app imports pir.search where the app is made
    from pir.search.index import Index
    from pir.search.manifest import Entry

MAX_TOP = 500
ALLOWED_HOSTS = "PIR_ALLOWED_HOSTS"     # app.config key: the Host headers the app answers (none until set)
_CSP = ("default-src 'self'; img-src 'self'{}; script-src 'self'; style-src 'self'; object-src 'none'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
CSP = "PIR_CSP"   # app.config key: the Content-Security-Policy sent (img-src widened by --basemap only)
SECURITY_HEADERS = {
    # The page loads its own script, style, thumbnails and API only; no inline code, no framing.
    "Content-Security-Policy": _CSP.format(""),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",   # other sites cannot even embed the images
}
# /image sends indexed images only (what `pir index` lists), with their own type: never HTML or script.
IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".tif": "image/tiff",
               ".tiff": "image/tiff", ".bmp": "image/bmp"}
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
# A verdict is kept only for a file last changed longer ago than this: file systems stamp ctime from a
# coarse clock (a few ms), so a rewrite in the same tick as the hash could keep its stamp ("racy git").
RACY_NS = 2_000_000_000


def content_security_policy(img_sources: Iterable[str] = ()) -> str:
    """The page's CSP: self only, plus ``img_sources`` (a --basemap's origin) for images."""
    return _CSP.format("".join(f" {source}" for source in img_sources))


def contained(root: Path, relative: str) -> Path | None:
    """``root/relative`` resolved (links followed) when it stays inside ``root``, else None."""
    if not relative or relative.startswith(("/", "\\")) or "\0" in relative:
        return None
    root = root.resolve()
    candidate = (root / relative).resolve()
    return candidate if candidate != root and root in candidate.parents else None


def loopback_hosts(port: int) -> frozenset[str]:
    """The Host headers a server bound to 127.0.0.1:``port`` answers: the loopback names with the port,
    and without it only on port 80, where browsers leave it out."""
    names = ("127.0.0.1", "localhost", "[::1]")
    return frozenset({f"{name}:{port}" for name in names} | (set(names) if port == 80 else set()))


def trusted_root(index, root: str | os.PathLike | None = None) -> Path:
    """The folder to serve the index's manifest paths from: ``root`` when the user names it, else the
    index's own root when this user built the index from it here or it lies inside the index folder;
    otherwise ValueError (one line) asking for --root."""
    from pir_tools import known_indexes

    if root is not None:
        chosen = Path(root).resolve()
        if not chosen.is_dir():
            raise ValueError(f"{root}: --root is not a folder")
        return chosen
    own = index.root   # resolved, links followed; index.folder is resolved too (load_index)
    if own == index.folder or index.folder in own.parents or known_indexes.built_here(index.folder, own):
        return own
    raise ValueError(f"{index.folder}: its index.json names the root {own}, which this index was not built "
                     f"from on this machine; if you trust that folder, serve it with --root PATH")


def _open_regular(path: Path) -> tuple[int, os.stat_result] | None:
    """(fd, fstat) of a regular file, or None. O_NOFOLLOW: a link put in place after the containment check
    is refused; O_NONBLOCK: a FIFO named by a manifest does not hang the request."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        return None
    os.set_blocking(fd, True)
    return fd, info


def _sha256_fd(fd: int) -> str:
    """Hex sha256 of an open file, which is then rewound for sending."""
    digest = files.sha256_file(fd)
    os.lseek(fd, 0, os.SEEK_SET)
    return digest


class _Verdicts:
    """Whether an opened file's bytes are a manifest row's sha256, hashed once per file version.

    Keyed by the fstat stamp of the opened descriptor (device, inode, size, mtime, ctime): any write,
    rename over or replacement changes the inode or ctime, which no user can set back, so a stale
    verdict is never reused; a file changed in the last RACY_NS is hashed on every request."""

    def __init__(self, limit: int):
        self._seen: dict[tuple, bool] = {}
        self._lock = threading.Lock()
        self._limit = limit

    def matches(self, fd: int, info: os.stat_result, entry) -> bool:
        if info.st_size != entry.size:
            return False
        key = (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns, entry.sha256)
        with self._lock:
            verdict = self._seen.get(key)
        if verdict is None:
            verdict = _sha256_fd(fd) == entry.sha256
            if time.time_ns() - max(info.st_mtime_ns, info.st_ctime_ns) > RACY_NS:
                with self._lock:
                    if len(self._seen) >= self._limit:   # files rewritten over and over: start again
                        self._seen.clear()
                    self._seen[key] = verdict
        return verdict


def create_app(index_dir: str | os.PathLike, checkpoint: str | os.PathLike | None = None, device: str = "cpu", *,
               root: str | os.PathLike | None = None, allowed_hosts: Iterable[str] = (), index: Index | None = None,
               exact: bool = False, basemap: str | None = None, attribution: str = "",
               quicklook_side: int = serve_map.QUICKLOOK_SIDE):
    """The Flask app over one index (loaded once; restart the server after re-indexing).

    ``root``: where the manifest's paths are served from (None: the index's own root, taken as given;
    `pir serve` decides with :func:`trusted_root` first). ``allowed_hosts``: the Host headers answered
    (:func:`loopback_hosts`); `pir serve` sets ``app.config[ALLOWED_HOSTS]`` once the port is bound.
    ``index``: ``index_dir`` already loaded (`pir serve` loads it once, to check its root first).
    ``exact``: exact search, the index's ANN index unused (load ``index`` with ``ann=False`` then).
    ``basemap``: a web map's tile URL template shown under the quicklooks (ValueError unless http(s) with a
    plain host: pir_tools.serve_map.basemap_source), credited with ``attribution``; None: no web map, and
    the page loads nothing from elsewhere. ``quicklook_side``: the quicklooks' longest side in pixels.
    """
    import numpy as np
    from flask import Flask, abort, jsonify, render_template, request
    from werkzeug.wsgi import wrap_file

    from pir.data.geo import is_geotiff_name
    from pir.search.query import open_search

    basemap_origin = serve_map.basemap_source(basemap) if basemap else None
    searcher, encoder = open_search(index_dir, checkpoint, device, index=index, exact=exact)
    index = searcher.index
    serve_root = Path(root).resolve() if root is not None else index.root
    row_of = {(e.path, e.window): i for i, e in enumerate(index.entries)}   # windows of a scene share a path
    first_row = {}
    for i, e in enumerate(index.entries):
        first_row.setdefault(e.path, i)
    # files with a georeferenced row: their quicklooks are the map's base layer
    rasters = list(dict.fromkeys(e.path for e in index.entries if e.crs and is_geotiff_name(e.path)))
    is_raster = set(rasters)
    bands = tuple(index.identity["bands"]) if index.identity.get("bands") else None
    verdicts = _Verdicts(limit=2 * len(first_row) + 1024)
    quicklooks = serve_map.Quicklooks()
    encode_lock = threading.Lock()   # one query through the model at a time; the matrix product is shared
    app = Flask(__name__)
    app.config[ALLOWED_HOSTS] = frozenset(h.lower() for h in allowed_hosts)
    app.config[CSP] = content_security_policy([basemap_origin] if basemap_origin else [])
    app.url_map.merge_slashes = False   # "/image//etc/passwd" reaches the containment check, not a redirect

    @app.before_request
    def only_the_bound_address():
        # The Host header as sent (no fallback to SERVER_NAME): missing or foreign is refused, so a
        # rebound DNS name cannot read the page, the API or a file.
        if request.environ.get("HTTP_HOST", "").lower() not in app.config[ALLOWED_HOSTS]:
            return app.response_class("misdirected request: this server answers only to its loopback address\n",
                                      status=421, mimetype="text/plain")
        return None

    @app.after_request
    def security_headers(response):
        response.headers.update(SECURITY_HEADERS)
        response.headers["Content-Security-Policy"] = app.config[CSP]
        return response

    def indexed(relative: str, window: str | None = None) -> tuple[Entry, Path]:
        """(manifest row, file) of an indexed path whose file resolves inside the root, or 404. ``window``:
        the row of that window ("" = the whole-file row); None: any row of the path (the file itself)."""
        row = first_row.get(relative) if window is None else row_of.get((relative, window))
        path = contained(serve_root, relative) if row is not None else None
        if path is None or (window and not serve_map.WINDOW_TEXT.match(window)):
            abort(404)
        return index.entries[row], path

    def verified(entry: Entry, path: Path) -> tuple[int, os.stat_result]:
        """(fd, fstat) of the file while its size and sha256 are the row's; 404 for no regular file, 409 else."""
        opened = _open_regular(path)
        if opened is None:
            abort(404)
        fd, info = opened
        try:
            same = verdicts.matches(fd, info, entry)
        except OSError:   # a read error while hashing: not known to be the indexed file
            same = False
        if not same:      # changed since indexing, or never the indexed file
            os.close(fd)
            abort(409)
        return fd, info

    def send_fd(fd: int, info: os.stat_result, mimetype: str, etag: str, max_age: int | None = None):
        """The open file itself (not its path again), with range and conditional support."""
        response = app.response_class(wrap_file(request.environ, os.fdopen(fd, "rb")), mimetype=mimetype,
                                      direct_passthrough=True)
        response.content_length = info.st_size
        response.last_modified = info.st_mtime
        response.set_etag(etag)
        if max_age:
            response.cache_control.public, response.cache_control.max_age = True, max_age
        else:
            response.cache_control.no_cache = True
        return response.make_conditional(request.environ, accept_ranges=True, complete_length=info.st_size)

    def send_made(data: bytes, etag: str):
        """Bytes made from a verified file (a crop, a quicklook): revalidated on every use, like originals."""
        response = app.response_class(data, mimetype="image/png")
        response.set_etag(etag)
        response.cache_control.no_cache = True
        return response.make_conditional(request.environ)

    def from_scene(relative: str, window: str | None, make):
        """``make(source)`` of an indexed TIFF still equal to its row, read through the checked descriptor;
        422 when it cannot be read as a scene (or is not georeferenced, for a quicklook)."""
        entry, path = indexed(relative, window)
        if not is_geotiff_name(relative):
            abort(404)
        fd, _ = verified(entry, path)
        try:
            return entry, make(serve_map.fd_source(fd, path), entry)
        except Exception as exc:  # ValueError, ImageRefused, rasterio's errors: not servable as a scene
            app.logger.info("%s: %s", relative, exc)
            abort(422)
        finally:
            os.close(fd)

    def quicklook_of(relative: str) -> serve_map.Quicklook:
        if relative not in is_raster:
            abort(404)
        return from_scene(relative, None, lambda source, entry: quicklooks.get(
            (relative, entry.sha256), lambda: serve_map.make_quicklook(source, bands, quicklook_side)))[1]

    def urls(entry: Entry) -> dict:
        path, query = quote(entry.path), f"?window={quote(entry.window, safe=',')}" if entry.window else ""
        return {"thumb": f"/thumb/{path}{query}", "image": f"/image/{path}{query}",
                "quicklook": f"/api/quicklook/{path}" if entry.path in is_raster else None}

    @app.get("/")
    def page():
        return render_template("search.html", count=len(index.entries), scenes=index.scenes,
                               identity=index.identity, folder=str(index_dir),   # as the user named it
                               geo=bool(rasters), basemap=basemap or "", attribution=attribution)

    @app.get("/api/info")
    def api_info():
        listed = rasters if len(rasters) <= serve_map.MAP_ALL_RASTERS else []
        return jsonify({"images": len(index.entries), "georeferenced": sum(1 for e in index.entries if e.crs),
                        "rasters": [{"path": p, "quicklook": f"/api/quicklook/{quote(p)}"} for p in listed],
                        "basemap": {"url": basemap, "attribution": attribution} if basemap else None})

    @app.get("/api/search")
    def api_search():
        text, like = request.args.get("q", "").strip(), request.args.get("like", "")
        top = max(1, min(request.args.get("top", 20, type=int) or 20, MAX_TOP))
        scene = request.args.get("scene") or None
        if like:
            row = row_of.get((like, request.args.get("window", "")))
            if row is None:
                abort(404)
            query = np.asarray(index.vectors[row], dtype=np.float32)
        elif text:
            try:
                with encode_lock:
                    query = encoder.query_text(text)
            except ValueError as exc:   # e.g. "?!": nothing left after PIR's caption normalisation
                return jsonify({"error": str(exc)}), 400
        else:
            return jsonify({"error": "give q=<text> or like=<indexed path>"}), 400
        return jsonify([{"path": h.path, "window": h.entry.window, "score": round(h.score, 6), "scene": h.entry.scene,
                         **urls(h.entry), "footprint": serve_map.footprint(h.entry)}
                        for h in searcher.search(query, top, scene)])

    @app.get("/thumb/<path:relative>")
    def thumb(relative: str):
        entry = indexed(relative, request.args.get("window", ""))[0]
        # named by the manifest's sha256 (checked) and window (WINDOW_TEXT), and must resolve inside the index folder
        thumbnail = index.thumbnail(entry) if _SHA256.match(entry.sha256) else None
        try:
            inside = thumbnail.relative_to(index.folder).as_posix() if thumbnail is not None else None
        except ValueError:
            inside = None
        cached = contained(index.folder, inside) if inside else None
        opened = _open_regular(cached) if cached is not None else None
        if opened is None:
            abort(404)
        return send_fd(*opened, mimetype="image/jpeg", etag=entry.sha256 + (f"-{entry.window}" if entry.window else ""),
                       max_age=3600)

    @app.get("/image/<path:relative>")
    def image(relative: str):
        window = request.args.get("window", "")
        if window:   # the window's pixels, as the index read them
            entry, crop = from_scene(relative, window, lambda source, entry: serve_map.crop_png(source, window, bands))
            return send_made(crop, f"{entry.sha256}-{window}")
        entry, path = indexed(relative)
        mimetype = IMAGE_TYPES.get(PurePosixPath(relative).suffix.lower())
        if not mimetype:
            abort(404)
        return send_fd(*verified(entry, path), mimetype=mimetype, etag=entry.sha256)

    @app.get("/api/quicklook/<path:relative>")
    def api_quicklook(relative: str):
        made = quicklook_of(relative)
        return jsonify({"image": f"/quicklook/{quote(relative)}", "bounds": made.bounds, "width": made.width,
                        "height": made.height})

    @app.get("/quicklook/<path:relative>")
    def quicklook(relative: str):
        made = quicklook_of(relative)
        return send_made(made.png, f"{index.entries[first_row[relative]].sha256}-q{quicklook_side}")

    return app


def main(argv: list[str] | None = None) -> int:
    from werkzeug.serving import make_server

    from pir.search.index import load_index

    parser = argparse.ArgumentParser(
        prog="pir serve", description="A local search page over an index; for georeferenced images, a map of the "
        "hits' footprints over the scenes' own quicklooks (nothing is loaded from the network unless --basemap).")
    parser.add_argument("index", type=Path, help="index folder made by `pir index`")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--root", type=Path, default=None,
                        help="serve the indexed files from this folder (an index not built here, or moved images)")
    parser.add_argument("--checkpoint", type=Path, default=None, help="the index's checkpoint, if it has moved")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--exact", action="store_true",
                        help="exact search even when the index has an approximate one (which is then not read)")
    parser.add_argument("--basemap", metavar="URL_TEMPLATE", default=None,
                        help="a web map under the quicklooks, e.g. https://tile.openstreetmap.org/{z}/{x}/{y}.png: "
                             "the page then loads tiles from that origin (default: none, no network)")
    parser.add_argument("--basemap-attribution", metavar="TEXT", default="",
                        help="the credit the tile server asks for, e.g. '(c) OpenStreetMap contributors'")
    args = parser.parse_args(argv)
    try:
        index = load_index(args.index, ann=not args.exact)
        app = create_app(args.index, args.checkpoint, args.device, root=trusted_root(index, args.root), index=index,
                         exact=args.exact, basemap=args.basemap, attribution=args.basemap_attribution)
        server = make_server("127.0.0.1", args.port, app, threaded=True)
    except (ValueError, OSError) as exc:
        print(f"pir serve: {exc}", file=sys.stderr)
        return 1
    app.config[ALLOWED_HOSTS] = loopback_hosts(server.server_port)   # the port bound (--port 0: any free one)
    print(f"serving {args.index} on http://127.0.0.1:{server.server_port}/ (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0
