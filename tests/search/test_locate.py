"""pir locate: the heat map's grid and averaging, its GeoTIFF and PNG, the semantic-localization metrics and
AIR-SLT annotations, refusals, and a planted mosaic of the built-in data located by a real (tiny) model."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import rasterio
import torch
import torch.nn.functional as F
from PIL import Image
from rasterio.transform import from_origin

from pir.config import SyntheticConfig
from pir.data.geo import Georef, Window, window_grid
from pir.data.synthetic import CLASSES, render_image
from pir.evaluation import semantic_localization as selo
from pir.search.locate import MAX_CELLS, Grid, HeatAccumulator, Located, locate, write_heat_tiff, write_overlay_png
from pir_tools.locate import main as locate_main

UTM31 = "EPSG:32631"
ORIGIN = (500_000.0, 5_000_000.0)


def write_scene(path, rgb: np.ndarray, crs: str | None = UTM31, pixel: float = 10.0) -> None:
    """uint8 [H, W, 3] as a tiled GeoTIFF (``pixel`` m from ORIGIN in ``crs``; a plain TIFF with crs=None)."""
    height, width = rgb.shape[:2]
    georef = {"crs": crs, "transform": from_origin(*ORIGIN, pixel, pixel)} if crs else {}
    with rasterio.open(path, "w", driver="GTiff", width=width, height=height, count=3, dtype="uint8", tiled=True,
                       blockxsize=64, blockysize=64, **georef) as out:
        out.write(np.moveaxis(rgb, -1, 0))


# --------------------------------------------------------------------------- grid and averaging

def brute_force_heat(width: int, height: int, windows: list[Window], scores: list[float]) -> np.ndarray:
    """The definition, pixel by pixel: each pixel the mean score of the windows covering it."""
    total, count = np.zeros((height, width)), np.zeros((height, width))
    for w, s in zip(windows, scores):
        total[w.row:w.row + w.height, w.col:w.col + w.width] += s
        count[w.row:w.row + w.height, w.col:w.col + w.width] += 1
    return total / count


def test_overlapping_windows_are_averaged_per_pixel():
    windows = window_grid(70, 50, 32, 16)                  # edge windows moved back: cols 0,16,32,38; rows 0,16,18
    scores = [float(k % 5) - 1.5 for k in range(len(windows))]
    acc = HeatAccumulator(Grid.for_scene(70, 50))
    acc.add(windows, scores)
    assert acc.grid.full_resolution
    np.testing.assert_allclose(acc.heat(), brute_force_heat(70, 50, windows, scores), atol=1e-6)
    # two known windows: their overlap holds the mean, each side its own score
    acc = HeatAccumulator(Grid.for_scene(40, 20))
    acc.add([Window(0, 0, 24, 20), Window(16, 0, 24, 20)], [1.0, 3.0])
    heat = acc.heat()
    assert (heat[:, :16] == 1.0).all() and (heat[:, 16:24] == 2.0).all() and (heat[:, 24:] == 3.0).all()


def test_a_coarse_grid_pools_the_pixels_of_each_cell():
    windows = window_grid(70, 50, 32, 16)
    scores = [float(k % 5) for k in range(len(windows))]
    grid = Grid.for_scene(70, 50, cell=10)
    assert (grid.cols, grid.rows, grid.cell_size) == (7, 5, (10.0, 10.0))
    acc = HeatAccumulator(grid)
    acc.add(windows, scores)
    fine = brute_force_heat(70, 50, windows, scores)
    count = np.zeros((50, 70))
    for w in windows:
        count[w.row:w.row + w.height, w.col:w.col + w.width] += 1
    # a cell = sum over its pixels of (sum of the scores there) / sum over its pixels of (windows there)
    pooled = ((fine * count).reshape(5, 10, 7, 10).sum((1, 3)) / count.reshape(5, 10, 7, 10).sum((1, 3)))
    np.testing.assert_allclose(acc.heat(), pooled, atol=1e-6)
    # cells that do not divide the scene: equal cells of 71/8 x 50/5 px, still covering it exactly
    grid = Grid.for_scene(71, 50, cell=9)
    assert (grid.cols, grid.rows) == (8, 6) and grid.cols * grid.cell_size[0] == 71
    acc = HeatAccumulator(grid)
    acc.add(window_grid(71, 50, 32, 16), [2.0] * len(window_grid(71, 50, 32, 16)))
    np.testing.assert_allclose(acc.heat(), 2.0, atol=1e-6)  # a constant score stays constant through the weights


def test_a_big_scene_gets_a_coarse_grid_within_the_cap():
    grid = Grid.for_scene(40_000, 40_000)
    assert grid.cols * grid.rows <= MAX_CELLS and grid.cell_size == (20.0, 20.0)
    grid = Grid.for_scene(100_003, 30_001)
    assert grid.cols * grid.rows <= MAX_CELLS
    assert (grid.cols * grid.cell_size[0], grid.rows * grid.cell_size[1]) == pytest.approx((100_003, 30_001))
    assert Grid.for_scene(1024, 1024).full_resolution
    with pytest.raises(ValueError, match="--cell 20 or more"):
        Grid.for_scene(40_000, 40_000, cell=4)
    # the map's transform: the scene's, scaled to cells, covering the same bounds
    georef = Georef(UTM31, tuple(from_origin(*ORIGIN, 0.5, 0.5))[:6], 40_000, 40_000)
    located = Located(np.zeros((1, 1), np.float32), Grid.for_scene(40_000, 40_000), georef, 0, np.zeros((1, 1, 3)))
    assert located.transform() @ (2000, 2000) == pytest.approx(georef.corners()[2])
    assert located.transform() @ (0, 0) == pytest.approx(ORIGIN)


# --------------------------------------------------------------------------- the command: outputs and refusals

def test_pir_locate_writes_a_heat_map_with_the_scenes_crs_and_extent(tmp_path, checkpoint, capsys):
    rng = np.random.default_rng(0)
    write_scene(tmp_path / "scene.tif", rng.integers(0, 255, (150, 200, 3), dtype=np.uint8))
    out = tmp_path / "maps" / "heat.tif"
    assert locate_main([str(tmp_path / "scene.tif"), "a forest with many green trees", "--checkpoint", str(checkpoint),
                        "--out", str(out), "--tile", "64", "--stride", "32", "--batch-size", "8"]) == 0
    with rasterio.open(tmp_path / "scene.tif") as scene, rasterio.open(out) as heat:
        assert heat.count == 1 and heat.dtypes == ("float32",) and heat.crs == scene.crs
        assert heat.bounds == pytest.approx(scene.bounds) and (heat.width, heat.height) == (200, 150)
        values = heat.read(1)
        tags = heat.tags()
        assert math.isnan(heat.nodata)
    assert np.isfinite(values).all() and -1.0 <= values.min() <= values.max() <= 1.0
    assert tags["query"] == "a forest with many green trees" and (tags["tile"], tags["stride"]) == ("64", "32")
    assert re.fullmatch(r"[0-9a-f]{64}", tags["checkpoint_sha256"])
    assert (tmp_path / "maps" / "heat.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    record = json.loads((tmp_path / "maps" / "heat.json").read_text())
    assert record["windows"] == 6 * 4 and record["grid"] == [200, 150] and record["metrics"] is None
    assert record["score"]["max"] == pytest.approx(float(values.max()))
    assert "heat map:" in capsys.readouterr().out


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_a_plain_tiff_gives_a_map_in_pixel_coordinates(tmp_path, encoder):
    write_scene(tmp_path / "plain.tif", np.full((96, 80, 3), 90, np.uint8), crs=None)
    located = locate(tmp_path / "plain.tif", "a beach", encoder, tile=32, stride=32, cell=8, progress=False)
    assert located.georef is None and located.heat.shape == (12, 10) and located.windows == 9
    write_heat_tiff(tmp_path / "heat.tif", located, {"query": "a beach"})
    write_overlay_png(tmp_path / "heat.png", located, "a beach")
    with rasterio.open(tmp_path / "heat.tif") as heat:
        assert heat.crs is None and heat.transform @ (10, 12) == pytest.approx((80, 96))
    assert (tmp_path / "heat.png").stat().st_size > 1000


def test_bad_input_is_refused_in_one_line_naming_the_file(tmp_path, capsys):
    write_scene(tmp_path / "scene.tif", np.zeros((64, 64, 3), np.uint8))
    Image.new("RGB", (64, 64)).save(tmp_path / "photo.png")
    (tmp_path / "text.tif").write_text("not a tiff")
    cases = [
        (["photo.png", "--out", "h.tif"], "photo.png: not a TIFF"),
        (["missing.tif", "--out", "h.tif"], "missing.tif: no such file"),
        (["text.tif", "--out", "h.tif"], "text.tif: not a readable TIFF"),
        (["scene.tif", "--out", "scene.tif"], "scene.tif: is the scene itself"),
        (["scene.tif", "--out", "heat.png"], "heat.png: --out must name a .tif"),
        (["scene.tif", "--out", "h.tif", "--png", "scene.tif"], "scene.tif: is the scene itself"),
        (["scene.tif", "--out", "h.tif", "--tile", "8"], "--tile must be at least 16"),
        (["scene.tif", "--out", "h.tif", "--annotations", "missing.json"], "missing.json"),
        (["scene.tif", "--out", "h.tif", "--max-pixels", "100"], "scene.tif: image is 64x64 pixels"),
    ]
    for args, message in cases:
        first, rest = args[0], args[1:]
        rest = [str(tmp_path / a) if a.endswith((".tif", ".png", ".json")) else a for a in rest]
        assert locate_main([str(tmp_path / first), "text", "--checkpoint", str(tmp_path / "none.pt"), *rest]) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("pir locate: ") and message in err and "\n" not in err, (args, err)
    assert not (tmp_path / "h.tif").exists()


# --------------------------------------------------------------------------- metrics

def test_rsu_ras_rda_rmi_on_hand_computed_cases():
    mask = np.zeros((10, 10), bool)
    mask[2:4, 2:4] = True
    assert selo.rsu(mask.astype(float), mask) == pytest.approx(1.0)                 # all attention inside
    assert selo.rsu(np.ones((10, 10)), mask) == pytest.approx(1 - math.exp(-0.707))   # uniform: ratio 1
    assert selo.rsu(np.roll(mask, 5, axis=0).astype(float), mask) == 0.0            # all attention outside
    circle = np.array([[10.0, 10.0, 5.0]])
    assert selo.ras(circle, np.array([[10.0, 10.0]])) == 0.0                        # centre on the centre
    assert selo.ras(circle, np.array([[13.0, 10.0]])) == pytest.approx((math.exp(1.8) - 1) / (math.exp(3) - 1))
    assert selo.ras(circle, np.array([[13.0, 14.0]])) == pytest.approx(1.0)         # on the rim: distance r
    assert selo.ras(circle, np.zeros((0, 2))) == 1.0 and selo.rda(circle, np.zeros((0, 2))) == 0.0
    assert selo.rda(circle, np.array([[11.0, 10.0], [40.0, 40.0]])) == 1.0           # one centre inside
    two = np.array([[8.0, 10.0], [12.0, 10.0]])                                       # spread 2 of r 5
    assert selo.rda(circle, two) == pytest.approx(0.5 * (1 - 0.4) + math.exp(-0.5 * 4))
    assert selo.rmi(0.9, 0.1, 0.5) == pytest.approx(0.4 * 0.9 + 0.35 * 0.9 + 0.25 * 0.5)
    square = np.array([[0.0, 0.0], [4.0, 0.0], [4.0, 4.0], [0.0, 4.0]])
    assert selo.region_circles((square,)) == pytest.approx(np.array([[2.0, 2.0, 1.5 * math.sqrt(8)]]))
    assert (selo.probability_map(np.full((3, 3), 0.4)) == 0).all()                  # flat: nothing stands out


def test_a_perfect_heat_map_scores_one_and_a_wrong_one_zero():
    """2000 x 2000 px at 10 px cells; the annotated square 800..1200. Hot exactly there: one attention centre
    on its centre, none outside. Hot on another square: no attention inside the region."""
    grid = (200, 200)
    region = (np.array([[800.0, 800.0], [1200.0, 800.0], [1200.0, 1200.0], [800.0, 1200.0]]),)
    perfect, wrong = np.zeros(grid, np.float32), np.zeros(grid, np.float32)
    perfect[80:120, 80:120] = 0.4
    wrong[10:30, 10:30] = 0.4
    good = selo.semantic_localization(perfect - 0.1, region, (10.0, 10.0))
    assert good.mask_cells == 1600 and good.centres == pytest.approx(np.array([[1000.0, 1000.0]]))
    assert good.metrics() == pytest.approx({"Rsu": 1.0, "Ras": 0.0, "Rda": 1.0, "Rmi": 1.0})
    bad = selo.semantic_localization(wrong, region, (10.0, 10.0))
    assert bad.metrics() == pytest.approx({"Rsu": 0.0, "Ras": 1.0, "Rda": 0.0, "Rmi": 0.0})
    assert json.dumps(good.record())    # JSON-ready


AIR_SLT = [   # the published anno.json's layout, captions as written there (trailing newline, full stops)
    {"caption": "there is a green pond next to the gray road.\n", "jpg_name": "0.jpg",
     "points": [[[100.5, 20.0], [90.0, 170.0], [270.0, 180.0], [280.0, 30.0]]]},
    {"caption": "some cars are parked in a parking lot.", "jpg_name": "0.jpg",
     "points": [[[10, 10], [40, 10], [40, 40]], [[50, 50], [90, 50], [90, 90], [50, 90]]]},
    {"caption": "green baseball field sits next to grey road.", "jpg_name": "10.jpg",
     "points": [[[0, 0], [10, 0], [10, 10]]]},
]


def test_air_slt_annotations_are_read_as_published_and_matched_to_scene_and_query(tmp_path, monkeypatch):
    path = tmp_path / "anno.json"
    path.write_text(json.dumps(AIR_SLT))
    entries = selo.read_annotations(path)
    assert [len(e.polygons) for e in entries] == [1, 2, 1] and entries[0].polygons[0].shape == (4, 2)
    chosen = selo.select_annotation(entries, tmp_path / "0.tif", "There is a green pond next to the gray road")
    assert chosen.caption.startswith("there is a green pond") and chosen.polygons[0][0, 0] == 100.5
    assert len(selo.select_annotation(entries, "10.tiff", "anything").polygons) == 1   # its only entry
    with pytest.raises(ValueError, match="none with the caption 'a stadium'.*query one of"):
        selo.select_annotation(entries, "0.tif", "a stadium", path)
    with pytest.raises(ValueError, match=r"no entry's jpg_name is 5\.\*"):
        selo.select_annotation(entries, "5.tif", "a pond", path)
    one = tmp_path / "one.json"                       # one object, a single polygon as a list of points
    one.write_text(json.dumps({"caption": "x", "jpg_name": "", "points": [[0, 0], [5, 0], [5, 5]]}))
    assert selo.select_annotation(selo.read_annotations(one), "scene.tif", "y").polygons[0].shape == (3, 2)
    for text, message in [("[1, 2", "not a JSON annotation file"), ("[]", "expected a JSON list"),
                          ('[{"caption": "x"}]', "entry 0: expected an object with \"points\""),
                          ('[{"points": [[[0, 0], [1, 1]]]}]', "at least three finite"),
                          ('[{"points": "abc"}]', "must be a list of polygons")]:
        path.write_text(text)
        with pytest.raises(ValueError, match=re.escape(message)):
            selo.read_annotations(path)
    monkeypatch.setattr(selo, "MAX_ANNOTATION_BYTES", 8)
    with pytest.raises(ValueError, match="larger than 8 bytes"):
        selo.read_annotations(one)
    mask = selo.polygon_mask(entries[1].polygons, (10, 10), (10.0, 10.0))
    assert mask[5:9, 5:9].all() and mask[1, 2] and mask[1, 3] and mask[2, 3]   # the square; cells under the
    assert not (mask[2, 1] or mask[3, 1] or mask[3, 2] or mask[0].any() or mask[9].any())   # triangle's edge


# --------------------------------------------------------------------------- a planted mosaic

SIDE = 32          # the toy encoder's input
MOSAIC_CLASSES = CLASSES[:8]


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


def _features(batch: torch.Tensor) -> torch.Tensor:
    """Colour layout (4 x 4 means), colour spread and edge energy per channel: 54 numbers an image."""
    x = batch.float() / 255.0
    grad = (x[..., 1:, :] - x[..., :-1, :]).abs().mean((-1, -2)) + (x[..., 1:] - x[..., :-1]).abs().mean((-1, -2))
    return torch.cat([F.adaptive_avg_pool2d(x, 4).flatten(1), x.flatten(2).std(-1), 4 * grad], 1)


class ToyEncoder:
    """A real, small text/image encoder (an MLP over image statistics, a bag of words), trained contrastively
    on the built-in data's captions in a second or two: enough to tell its scene classes apart."""

    def __init__(self, vocabulary: list[str], dim: int = 32):
        self.vocab = {w: i for i, w in enumerate(vocabulary)}
        self.image_net = torch.nn.Sequential(torch.nn.Linear(54, 96), torch.nn.ReLU(), torch.nn.Linear(96, dim))
        self.words = torch.nn.EmbeddingBag(len(vocabulary) + 1, dim, mode="mean")

    def preprocess(self, rgb: np.ndarray) -> torch.Tensor:
        small = Image.fromarray(np.ascontiguousarray(rgb)).resize((SIDE, SIDE), Image.Resampling.BILINEAR)
        return torch.from_numpy(np.array(small)).permute(2, 0, 1).contiguous()

    def texts(self, texts: list[str]) -> torch.Tensor:
        ids = [[self.vocab.get(w, len(self.vocab)) for w in _words(t)] or [len(self.vocab)] for t in texts]
        offsets = torch.tensor([0] + [len(i) for i in ids[:-1]]).cumsum(0)
        return F.normalize(self.words(torch.tensor([j for i in ids for j in i]), offsets), dim=-1)

    @torch.no_grad()
    def encode_images(self, batch: torch.Tensor) -> np.ndarray:
        return F.normalize(self.image_net(_features(batch)), dim=-1).numpy()

    @torch.no_grad()
    def query_text(self, text: str) -> np.ndarray:
        return self.texts([text])[0].numpy()


def train_toy_encoder(per_class: int = 24, steps: int = 150) -> ToyEncoder:
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    cfg = SyntheticConfig(image_size=64)
    drawn = [(c, *render_image(cls, cfg, np.random.default_rng(1000 * c + i)))
             for c, cls in enumerate(MOSAIC_CLASSES) for i in range(per_class)]
    toy = ToyEncoder(sorted({w for _, _, caps in drawn for cap in caps for w in _words(cap)}))
    features = _features(torch.stack([toy.preprocess(img) for _, img, _ in drawn]))
    labels = torch.tensor([c for c, _, _ in drawn])
    optimizer = torch.optim.Adam([*toy.image_net.parameters(), *toy.words.parameters()], lr=1e-2)
    for _ in range(steps):
        batch = torch.from_numpy(rng.choice(len(drawn), 64, replace=False))
        captions = [drawn[i][2][rng.integers(len(drawn[i][2]))] for i in batch.tolist()]
        logits = F.normalize(toy.image_net(features[batch]), dim=-1) @ toy.texts(captions).T / 0.1
        same = (labels[batch][:, None] == labels[batch][None]).float()   # same-class pairs are positives too
        target = same / same.sum(1, keepdim=True)
        loss = -(target * logits.log_softmax(1)).sum(1).mean() - (target * logits.log_softmax(0)).sum(0).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return toy


def planted_mosaic(path, plant: str, n: int = 8, k: int = 3, at: tuple[int, int] = (1, 4), size: int = 64):
    """An n x n mosaic of new images of the built-in data (size px each): a k x k block of class ``plant`` at
    block (row, col) ``at``, the rest other classes. Returns the block as (x0, y0, x1, y1) pixels."""
    cfg = SyntheticConfig(image_size=size)
    rng = np.random.default_rng(3)
    others = [c for c in MOSAIC_CLASSES if c != plant]
    rgb = np.zeros((n * size, n * size, 3), np.uint8)
    for i in range(n):
        for j in range(n):
            inside = at[0] <= i < at[0] + k and at[1] <= j < at[1] + k
            cls = plant if inside else others[rng.integers(len(others))]
            rgb[i * size:(i + 1) * size, j * size:(j + 1) * size] = render_image(
                cls, cfg, np.random.default_rng(900_000 + i * n + j))[0]
    write_scene(path, rgb)
    return at[1] * size, at[0] * size, (at[1] + k) * size, (at[0] + k) * size


def test_a_planted_scene_is_hotter_where_it_was_planted(tmp_path):
    toy = train_toy_encoder()
    x0, y0, x1, y1 = planted_mosaic(tmp_path / "mosaic.tif", "beach")
    located = locate(tmp_path / "mosaic.tif", "a beach with waves", toy, tile=64, stride=32, progress=False)
    inside = np.zeros(located.heat.shape, bool)
    inside[y0:y1, x0:x1] = True
    assert located.heat[inside].mean() > located.heat[~inside].mean() + 0.2
    region = (np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float64),)
    elsewhere = (np.array([[0, 320], [192, 320], [192, 512], [0, 512]], np.float64),)
    right = selo.semantic_localization(located.heat, region).metrics()
    wrong = selo.semantic_localization(located.heat, elsewhere).metrics()
    assert right["Rmi"] > 0.7 and right["Ras"] < 0.3 and wrong["Rmi"] < 0.4, (right, wrong)
