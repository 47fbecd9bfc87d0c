"""The geospatial pictures of the docs, from this project's own trained model: run after `dvc repro`.

    python scripts/docs_images.py [--keep DIR]

1. A planted scene: a 16 x 16 mosaic of 128 px images of the built-in synthetic dataset (a GeoTIFF in
   UTM 31N at 10 m), a 4 x 4 block of beaches in it, the rest drawn from the other scene classes, and an
   AIR-SLT-style annotation of the block.
2. `pir index SCENE --tile 256 --stride 256` with data/train/best.pt, then `pir serve` on it and a
   Chromium screenshot of the page for "waves wash the beach" with hit 1 opened on the map
   -> docs/images/serve_map.png.
3. `pir locate SCENE "waves wash the beach" --tile 128 --stride 64 --annotations ...`: its PNG overlay
   -> docs/images/locate_heat.png; it prints the semantic-localization metrics.
Both images are reduced to 256 colours. Takes about a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image
from rasterio.transform import from_origin

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))   # tests.browser: the headless Chromium the browser tests use

from pir.data.synthetic import CLASSES, SyntheticConfig, render_image  # noqa: E402
from tests.browser import screenshot  # noqa: E402

QUERY = "waves wash the beach"
GRID, SIDE, BLOCK, AT = 16, 128, 4, (9, 3)   # tiles per side, px per tile, planted block size, its (row, col)


def planted_scene(path: Path, seed: int = 0) -> list[list[int]]:
    """Write the mosaic GeoTIFF; the planted block's outline in pixels (an AIR-SLT polygon)."""
    others = [c for c in CLASSES if c != "beach"]
    rng, cfg = np.random.default_rng(seed), SyntheticConfig(image_size=SIDE)
    pixels = np.zeros((GRID * SIDE, GRID * SIDE, 3), np.uint8)
    for i in range(GRID):
        for j in range(GRID):
            inside = AT[0] <= i < AT[0] + BLOCK and AT[1] <= j < AT[1] + BLOCK
            cls = "beach" if inside else others[rng.integers(len(others))]
            pixels[i * SIDE:(i + 1) * SIDE, j * SIDE:(j + 1) * SIDE] = render_image(cls, cfg, rng)[0]
    with rasterio.open(path, "w", driver="GTiff", width=GRID * SIDE, height=GRID * SIDE, count=3, dtype="uint8",
                       crs="EPSG:32631", transform=from_origin(500_000, 5_000_000, 10, 10), tiled=True,
                       blockxsize=256, blockysize=256, compress="deflate") as out:
        out.write(np.moveaxis(pixels, -1, 0))
    (r0, c0), (r1, c1) = (a * SIDE for a in AT), ((a + BLOCK) * SIDE for a in AT)
    return [[c0, r0], [c1, r0], [c1, r1], [c0, r1]]


def pir(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pir_tools.cli", *args], check=True, cwd=ROOT)


def small_png(source: Path, target: Path, width: int | None = None) -> None:
    image = Image.open(source).convert("RGB")
    if width and image.width > width:
        image = image.resize((width, round(image.height * width / image.width)), Image.Resampling.LANCZOS)
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(target, optimize=True)
    print(f"{target.relative_to(ROOT)}: {target.stat().st_size // 1024} KiB")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve_screenshot(index: Path, out: Path) -> None:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "pir_tools.cli", "serve", str(index), "--port", str(port)],
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(120):   # the server loads the model before it listens
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.5)
        query = QUERY.replace(" ", "+")
        screenshot(f"http://127.0.0.1:{port}/?q={query}&top=8#hit=1", out, size=(1280, 760), wait_ms=6000)
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", type=Path, default=None, help="work in this folder and keep it")
    args = parser.parse_args()
    checkpoint = ROOT / "data" / "train" / "best.pt"
    if not checkpoint.is_file():
        sys.exit(f"{checkpoint}: not there; run `dvc repro` first")
    work = args.keep or Path(tempfile.mkdtemp(prefix="pir-docs-images-"))
    (work / "scenes").mkdir(parents=True, exist_ok=True)
    scene = work / "scenes" / "scene.tif"
    outline = planted_scene(scene)
    annotations = work / "anno.json"
    annotations.write_text(json.dumps([{"caption": QUERY, "jpg_name": "scene.jpg", "points": [outline]}]))

    pir("index", str(scene), "--tile", "256", "--stride", "256", "--checkpoint", str(checkpoint),
        "--out", str(work / "index"))
    serve_screenshot(work / "index", work / "map.png")
    small_png(work / "map.png", ROOT / "docs" / "images" / "serve_map.png")
    pir("locate", str(scene), QUERY, "--checkpoint", str(checkpoint), "--out", str(work / "heat.tif"),
        "--tile", "128", "--stride", "64", "--annotations", str(annotations))
    small_png(work / "heat.png", ROOT / "docs" / "images" / "locate_heat.png", width=700)


if __name__ == "__main__":
    main()
