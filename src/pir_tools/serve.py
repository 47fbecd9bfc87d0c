"""``pir serve INDEX_DIR [--port N]``: a local search page over an index, on 127.0.0.1 only.

Flask with one Jinja template (package data under pir_tools/templates) and a few lines of plain
JavaScript: no frontend build. Routes:

    GET /                          the page (?q=...&top=K&scene=S run a search on load)
    GET /api/search?q=...&top=K    [{"path": ..., "score": ..., "scene": ..., "thumb": url, "image": url}, ...],
                                   best first; &like=PATH searches by an indexed image, &scene=S filters
    GET /thumb/PATH                the thumbnail cached at index time (never decodes the full tile)
    GET /image/PATH                the original file

PATH is the manifest's root-relative path. Only indexed paths are served, and only when they resolve
inside the indexed root: anything else (../, absolute, encoded forms, links out of the root) is a 404.
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path
from urllib.parse import quote

MAX_TOP = 500


def contained(root: Path, relative: str) -> Path | None:
    """``root/relative`` resolved (links followed) when it stays inside ``root``, else None."""
    if not relative or relative.startswith(("/", "\\")) or "\0" in relative:
        return None
    root = root.resolve()
    candidate = (root / relative).resolve()
    return candidate if candidate != root and root in candidate.parents else None


def create_app(index_dir: str | Path, checkpoint: str | Path | None = None, device: str = "cpu"):
    """The Flask app over one index (loaded once; restart the server after re-indexing)."""
    from flask import Flask, abort, jsonify, render_template, request, send_file

    from pir.search.query import open_search

    searcher, encoder = open_search(index_dir, checkpoint, device)
    index = searcher.index
    entries = {e.path: e for e in index.entries}
    encode_lock = threading.Lock()   # one query through the model at a time; the matrix product is shared
    app = Flask(__name__)
    app.url_map.merge_slashes = False   # "/image//etc/passwd" reaches the containment check, not a redirect

    def indexed(relative: str) -> Path:
        """The file of an indexed path inside the root, or 404."""
        if relative not in entries or contained(index.root, relative) is None:
            abort(404)
        return contained(index.root, relative)

    @app.get("/")
    def page():
        return render_template("search.html", count=len(index.entries), scenes=index.scenes,
                               identity=index.identity, folder=str(index_dir))   # as the user named it

    @app.get("/api/search")
    def api_search():
        text, like = request.args.get("q", "").strip(), request.args.get("like", "")
        top = max(1, min(request.args.get("top", 20, type=int) or 20, MAX_TOP))
        scene = request.args.get("scene") or None
        if like:
            if like not in entries:
                abort(404)
            query = searcher.vector_of(like)
        elif text:
            with encode_lock:
                query = encoder.query_text(text)
        else:
            return jsonify({"error": "give q=<text> or like=<indexed path>"}), 400
        return jsonify([{"path": h.path, "score": round(h.score, 6), "scene": h.entry.scene,
                         "thumb": f"/thumb/{quote(h.path)}", "image": f"/image/{quote(h.path)}"}
                        for h in searcher.search(query, top, scene)])

    @app.get("/thumb/<path:relative>")
    def thumb(relative: str):
        indexed(relative)
        cached = index.thumbnail(entries[relative])
        if not cached.is_file():
            abort(404)
        return send_file(cached, mimetype="image/jpeg", max_age=3600)

    @app.get("/image/<path:relative>")
    def image(relative: str):
        return send_file(indexed(relative))

    return app


def main(argv: list[str] | None = None) -> int:
    from werkzeug.serving import make_server

    parser = argparse.ArgumentParser(prog="pir serve", description="A local search page over an index.")
    parser.add_argument("index", type=Path, help="index folder made by `pir index`")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--checkpoint", type=Path, default=None, help="the index's checkpoint, if it has moved")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    args = parser.parse_args(argv)
    try:
        app = create_app(args.index, args.checkpoint, args.device)
        server = make_server("127.0.0.1", args.port, app, threaded=True)
    except (ValueError, OSError) as exc:
        print(f"pir serve: {exc}", file=sys.stderr)
        return 1
    print(f"serving {args.index} on http://127.0.0.1:{server.server_port}/ (Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0
