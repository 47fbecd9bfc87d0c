"""`pir index` / `pir search` with a Hugging Face Hub id as --checkpoint (pir.hub): an exported folder,
uploaded (here: a cache built from it, offline), indexes exactly as the checkpoint it came from, and the
index records the id, the commit and the bytes' sha256, so `pir search` resolves and checks it again."""

from __future__ import annotations

import numpy as np

from pir import files
from pir.search.index import load_index
from pir_tools.export import main as export
from pir_tools.search import index_main, search_main
from tests.hub_cache import add_folder, hub_cache  # noqa: F401  (fixture)
from tests.search.conftest import write_images


def test_index_and_search_with_a_hub_checkpoint(checkpoint, hub_cache, tmp_path, capsys):
    assert export([str(checkpoint), "--hub", str(tmp_path / "hub")]) == 0
    commit = add_folder(hub_cache, "org/search-tiny", tmp_path / "hub")
    spec = "hf-hub:org/search-tiny"
    write_images(tmp_path / "images", 2)
    assert index_main([str(tmp_path / "images"), "--checkpoint", spec, "--out", str(tmp_path / "by-id")]) == 0
    assert index_main([str(tmp_path / "images"), "--checkpoint", str(checkpoint),
                       "--out", str(tmp_path / "by-path")]) == 0
    by_id, by_path = load_index(tmp_path / "by-id"), load_index(tmp_path / "by-path")
    snapshot = hub_cache / "models--org--search-tiny" / "snapshots" / commit
    assert by_id.identity["checkpoint"] == spec and by_id.identity["hub"] == {spec: commit}
    assert by_id.identity["checkpoint_sha256"] == files.sha256_path(snapshot)
    np.testing.assert_array_equal(np.asarray(by_id.vectors), np.asarray(by_path.vectors))
    capsys.readouterr()
    assert search_main([str(tmp_path / "by-id"), "a forest with many things", "--top", "3"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 3
