"""pir search and pir serve: exact ranking against brute force, the JSON API, no path traversal."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pir.search.index import build_index, load_index
from pir.search.query import open_search, top_k
from pir_tools.search import search_main

from tests.search.conftest import SCENES, scene_pixels, write_images


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, encoder, checkpoint) -> Path:
    """An index of 3 scenes x 4 images (+ an exact duplicate, for ties) labelled from their names."""
    folder = tmp_path_factory.mktemp("search")
    images = write_images(folder / "images", 4)
    shutil.copy(images[0], folder / "images" / "copy_of_forest.png")
    Image.fromarray(scene_pixels(2, 50)).save(folder / "images" / "odd name #1?.png")   # needs quoting in a URL
    build_index(folder / "images", folder / "index", encoder, checkpoint, progress=False,
                scenes=lambda rel: rel.split("_")[0] if rel.split("_")[0] in SCENES else "")
    return folder / "index"


def brute_force(vectors: np.ndarray, query: np.ndarray) -> np.ndarray:
    scores = vectors.astype(np.float32) @ query.astype(np.float32)
    return np.argsort(-scores, kind="stable")


def test_top_k_equals_a_full_stable_sort():
    rng = np.random.default_rng(0)
    for n, k in ((1000, 10), (50, 50), (7, 20), (300, 1)):
        scores = rng.integers(0, 20, n).astype(np.float32)   # many ties
        assert np.array_equal(top_k(scores, k), np.argsort(-scores, kind="stable")[:k])


def test_text_and_image_search_equal_a_brute_force_ranking(indexed, encoder, capsys):
    searcher, _ = open_search(indexed)
    index = load_index(indexed)
    paths = [e.path for e in index.entries]
    for query in (encoder.encode_texts(["a forest with many things"])[0], searcher.vector_of("beach_2.png")):
        expected = brute_force(np.asarray(index.vectors), query)
        assert [h.path for h in searcher.search(query, top=len(paths))] == [paths[i] for i in expected]
        assert [h.path for h in searcher.search(query, top=5)] == [paths[i] for i in expected[:5]]
        scenes = np.array([e.scene for e in index.entries])
        beach = [paths[i] for i in expected if scenes[i] == "beach"]
        assert [h.path for h in searcher.search(query, top=10, scene="beach")] == beach   # only 4 exist

    assert search_main([str(indexed), "a forest with many things", "--top", "4",
                        "--sheet", str(indexed.parent / "sheet.png")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    expected = brute_force(np.asarray(index.vectors), encoder.encode_texts(["a forest with many things"])[0])
    assert [Path(line.split("\t")[1]) for line in lines] == [index.root / paths[i] for i in expected[:4]]
    scores = [float(line.split("\t")[0]) for line in lines]
    assert scores == sorted(scores, reverse=True)
    assert (indexed.parent / "sheet.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_an_image_query_finds_itself_and_its_copy_first(indexed, capsys):
    image = load_index(indexed).root / "forest_0.png"
    assert search_main([str(indexed), "--image", str(image), "--top", "2"]) == 0
    hits = [line.split("\t") for line in capsys.readouterr().out.strip().splitlines()]
    assert sorted(Path(p).name for _, p in hits) == ["copy_of_forest.png", "forest_0.png"]
    assert all(float(s) == pytest.approx(1.0, abs=2e-3) for s, _ in hits)


def test_search_refuses_another_checkpoint(indexed, tmp_path, checkpoint, capsys):
    other = tmp_path / "other.pt"
    import torch
    state = torch.load(checkpoint, weights_only=True)
    state["epoch"] = 99
    torch.save(state, other)
    assert search_main([str(indexed), "anything", "--checkpoint", str(other)]) == 1
    assert "sha256 differs" in capsys.readouterr().err


# --------------------------------------------------------------------------- the web app

@pytest.fixture(scope="module")
def client(indexed):
    from pir_tools.serve import create_app, loopback_hosts
    root = load_index(indexed).root
    outside = indexed.parent / "secret.png"
    shutil.copy(root / "beach_0.png", outside)
    os.symlink(outside, root / "link_out.png")   # indexed below, but it points outside the root
    from pir.search.encoder import load_encoder
    ckpt = indexed / load_index(indexed).identity["checkpoint"]
    build_index(root, indexed, load_encoder(ckpt), ckpt, progress=False)
    assert "link_out.png" in {e.path for e in load_index(indexed).entries}   # so the 404 is the containment check
    return create_app(indexed, allowed_hosts=loopback_hosts(80)).test_client()   # the test client sends Host: localhost


def test_api_returns_ranked_json(client, indexed):
    reply = client.get("/api/search?q=a+beach+with+few+things&top=5")
    assert reply.status_code == 200
    hits = reply.get_json()
    assert len(hits) == 5 and all({"path", "score"} <= set(h) for h in hits)
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    like = client.get(f"/api/search?like={hits[0]['path']}&top=3").get_json()
    assert like[0]["path"] == hits[0]["path"]
    page = client.get("/?q=forest")
    assert page.status_code == 200 and b'id="results"' in page.data
    thumb = client.get(hits[0]["thumb"])
    assert thumb.status_code == 200 and thumb.mimetype == "image/jpeg"
    assert client.get("/image/forest_1.png").data == (load_index(indexed).root / "forest_1.png").read_bytes()
    odd = client.get("/api/search?like=odd+name+%231%3F.png&top=1").get_json()[0]
    assert odd["path"] == "odd name #1?.png" and client.get(odd["thumb"]).status_code == 200
    assert client.get(odd["image"]).data == (load_index(indexed).root / "odd name #1?.png").read_bytes()


@pytest.mark.parametrize("url", [
    "/image/../index/CURRENT", "/image/../../etc/passwd", "/image/%2e%2e/%2e%2e/etc/passwd",
    "/image/..%2f..%2fetc%2fpasswd", "/image//etc/passwd", "/image/%2fetc%2fpasswd",
    "/thumb/../secret.png", "/thumb/%2e%2e%2fsecret.png", "/image/link_out.png", "/image/not_indexed.png",
    "/api/search?like=../secret.png",
])
def test_paths_outside_the_indexed_root_are_404(client, url):
    assert client.get(url).status_code == 404


def test_a_relative_index_folder_serves_its_thumbnails(indexed, monkeypatch):
    from pir_tools.serve import create_app, loopback_hosts
    monkeypatch.chdir(indexed.parent)   # `pir serve data/index` from the project folder
    reply = create_app(Path(indexed.name), allowed_hosts=loopback_hosts(80)).test_client().get("/thumb/forest_1.png")
    assert reply.status_code == 200 and reply.data[:2] == b"\xff\xd8"


def test_a_clip_checkpoint_indexes_and_answers_text_with_its_own_bpe(tmp_path, capsys):
    """A CLIP-tower checkpoint: the index keeps no tokenizer (open_clip's BPE ships in the package) and a
    text query through the CLI ranks as a brute-force product with the model's own text embedding."""
    import torch

    from pir.config import model_config
    from pir.models import create_model
    from pir.models.checkpoint import save_checkpoint
    from pir.search.encoder import load_encoder
    from pir.search.index import TOKENIZER

    torch.manual_seed(0)
    cfg = model_config("clip-tiny")
    checkpoint = tmp_path / "best.pt"
    save_checkpoint(checkpoint, create_model(cfg), cfg, epoch=0, model_key="clip-search")
    write_images(tmp_path / "images", 2)
    encoder = load_encoder(checkpoint)
    build_index(tmp_path / "images", tmp_path / "index", encoder, checkpoint, progress=False)
    index = load_index(tmp_path / "index")
    assert not (index.generation / TOKENIZER).exists()

    assert search_main([str(tmp_path / "index"), "a beach with few things", "--top", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    expected = brute_force(np.asarray(index.vectors), encoder.encode_texts(["a beach with few things"])[0])
    assert [Path(line.split("\t")[1]).name for line in lines] == [index.entries[i].path for i in expected[:3]]
