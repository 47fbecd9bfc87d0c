"""Hugging Face Hub ids (pir.hub): parsing, and resolution through huggingface_hub's own API against a
cache built on disk here (tests/hub_cache.py), offline: a file, a folder, a branch, a commit, a miss;
what a block resolved, the params check, and the fetch stage's record of a Hub tokenizer."""

from __future__ import annotations

import json
import os

import pytest

from pir import hub
from pir.data.text import load_tokenizer, train_wordpiece
from pir.pipeline import tracking
from tests.data.test_fetch_stage import run_fetch
from tests.hub_cache import add_folder, add_snapshot, hub_cache  # noqa: F401  (fixture)


@pytest.mark.parametrize("spec, repo_id, filename, revision", [
    ("hf-hub:chendelong/RemoteCLIP", "chendelong/RemoteCLIP", "", ""),
    ("hf-hub:chendelong/RemoteCLIP/RemoteCLIP-ViT-B-32.pt", "chendelong/RemoteCLIP", "RemoteCLIP-ViT-B-32.pt", ""),
    ("hf-hub:Zilun/GeoRSCLIP/ckpt/RS5M_ViT-B-32.pt", "Zilun/GeoRSCLIP", "ckpt/RS5M_ViT-B-32.pt", ""),
    ("hf-hub:org/repo@v1.0", "org/repo", "", "v1.0"),
    ("hf-hub:org/repo/sub/w.safetensors@refs/pr/1", "org/repo", "sub/w.safetensors", "refs/pr/1"),
    ("hf-hub:org/repo/a@b.pt@" + "0" * 40, "org/repo", "a@b.pt", "0" * 40),   # the last '@' starts the revision
])
def test_good_ids_parse_and_print_back(spec, repo_id, filename, revision):
    parsed = hub.parse(spec)
    assert (parsed.repo_id, parsed.filename, parsed.revision) == (repo_id, filename, revision)
    assert str(parsed) == spec and hub.is_hub_id(spec)


@pytest.mark.parametrize("spec, problem", [
    ("hf-hub:", "no repository"),
    ("hf-hub:justone", "no repository"),
    ("hf-hub:/etc/passwd", "bad owner name"),                  # absolute: an empty owner
    ("hf-hub:org/repo/../../../etc/passwd", "must stay inside the repository"),
    ("hf-hub:org/repo/a/./b.pt", "must stay inside the repository"),
    ("hf-hub:org/repo//b.pt", "must stay inside the repository"),
    ("hf-hub:org/repo/", "must stay inside the repository"),
    ("hf-hub:org/repo/a\\..\\b.pt", "backslash"),
    ("hf-hub:or--g/repo", "bad owner name"),
    ("hf-hub:org/re..po", "bad repository name"),
    ("hf-hub:org/-repo", "bad repository name"),
    ("hf-hub:org/repo@", "empty revision"),
    ("hf-hub:org/repo@../main", "bad revision"),
    ("hf-hub:org/repo@a b", "bad revision"),
    ("hf-hub:org/repo/w.pt\n", "control characters"),
    ("org/repo", "not a Hub id"),
])
def test_malformed_ids_are_one_line_errors_naming_the_setting(spec, problem):
    with pytest.raises(ValueError) as caught:
        hub.parse(spec, "model.clip_weights")
    message = str(caught.value)
    assert message.startswith("model.clip_weights = ") and problem in message and "\n" not in message


def test_traversal_is_refused_before_huggingface_hub_is_asked(hub_cache):
    # nothing is cached and nothing may be fetched: the refusal is the parser's
    with pytest.raises(ValueError, match="must stay inside the repository"):
        hub.resolve("hf-hub:org/repo/../other/w.pt", "evaluate.checkpoint")


@pytest.fixture
def cached(hub_cache):
    """org/weights at two commits: main (w.pt = b"new") and one reachable by commit only (b"old")."""
    old = add_snapshot(hub_cache, "org/weights", {"w.pt": b"old", "tok/vocab.txt": b"a\n"}, branch=None)
    new = add_snapshot(hub_cache, "org/weights", {"w.pt": b"new", "tok/vocab.txt": b"a\nb\n", "README.md": b"#"})
    add_snapshot(hub_cache, "org/weights", {"w.pt": b"dev"}, branch="dev")
    return {"old": old, "new": new}


def test_a_file_resolves_through_the_cache_to_its_commit(cached, hub_cache):
    resolved = hub.resolve("hf-hub:org/weights/w.pt", "model.clip_weights")
    assert resolved.path.read_bytes() == b"new" and resolved.commit == cached["new"]
    assert resolved.path.is_relative_to(hub_cache) and resolved.path.parent.name == cached["new"]


def test_a_repository_resolves_to_its_snapshot_folder_and_a_folder_inside_it(cached):
    whole = hub.resolve("hf-hub:org/weights", "evaluate.checkpoint")
    assert whole.path.is_dir() and whole.path.name == cached["new"] and (whole.path / "README.md").is_file()
    folder = hub.resolve("hf-hub:org/weights/tok", "model.text_model", folder=True)
    assert folder.path == whole.path / "tok" and (folder.path / "vocab.txt").read_text() == "a\nb\n"


def test_revisions_by_branch_name_and_by_commit(cached):
    assert hub.resolve("hf-hub:org/weights/w.pt@dev").path.read_bytes() == b"dev"
    by_commit = hub.resolve(f"hf-hub:org/weights/w.pt@{cached['old']}")
    assert by_commit.path.read_bytes() == b"old" and by_commit.commit == cached["old"]


@pytest.mark.parametrize("spec", ["hf-hub:org/weights/missing.pt", "hf-hub:org/absent", "hf-hub:org/weights@nobranch",
                                  "hf-hub:org/weights/w.pt@" + "1" * 40])
def test_an_offline_miss_is_one_line_naming_the_id_and_the_cache(cached, hub_cache, spec):
    with pytest.raises(FileNotFoundError) as caught:
        hub.resolve(spec, "model.clip_weights")
    message = str(caught.value)
    assert message.startswith(f"model.clip_weights = {spec}: not in the Hugging Face cache ({hub_cache})")
    assert "HF_HUB_OFFLINE" in message and "\n" not in message


def test_a_folder_that_is_not_in_the_snapshot_is_named(cached):
    with pytest.raises(FileNotFoundError, match=r"model.text_model = hf-hub:org/weights/nope: no folder nope"):
        hub.resolve("hf-hub:org/weights/nope", "model.text_model", folder=True)


def test_a_link_out_of_the_cached_repository_is_refused(hub_cache, tmp_path):
    commit = add_snapshot(hub_cache, "org/linked", {"ok.txt": b"x"})
    outside = tmp_path / "outside"
    outside.mkdir()
    (hub_cache / "models--org--linked" / "snapshots" / commit / "escape").symlink_to(outside)
    with pytest.raises(ValueError, match="resolves outside its repository in the cache"):
        hub.resolve("hf-hub:org/linked/escape", "model.text_model", folder=True)


def test_local_paths_pass_through_and_ids_resolve(cached):
    assert hub.local_path("~/weights.pt") == hub.local_path(os.path.expanduser("~/weights.pt"))
    assert hub.local_path("hf-hub:org/weights/w.pt").read_bytes() == b"new"


def test_recording_collects_what_a_block_resolved_for_reports_and_mlflow(cached):
    with hub.recording() as outer:
        hub.resolve("hf-hub:org/weights/w.pt", "model.clip_weights")
        with hub.recording() as inner:
            hub.resolve(f"hf-hub:org/weights/w.pt@{cached['old']}", "evaluate.checkpoint")
    hub.resolve("hf-hub:org/weights/w.pt@dev", "model.vision_pretrained")   # after the blocks: not recorded
    assert set(outer) == {"model.clip_weights", "evaluate.checkpoint"} and set(inner) == {"evaluate.checkpoint"}
    assert hub.report(outer) == {"hf-hub:org/weights/w.pt": cached["new"],
                                 f"hf-hub:org/weights/w.pt@{cached['old']}": cached["old"]}
    tags = tracking.hub_tags(outer)
    assert tags["hub.model.clip_weights.id"] == "hf-hub:org/weights/w.pt"
    assert tags["hub.model.clip_weights.commit"] == cached["new"]
    assert tags["hub.evaluate.checkpoint.commit"] == cached["old"]


def test_params_check_an_id_as_written_and_leave_the_lookup_to_the_stage():
    from pir.pipeline.params import PipelineConfig

    cfgs = PipelineConfig.from_recipe("cpu", evaluate={"checkpoint": "hf-hub:org/repo/../x.pt"},
                                      model={"vision_pretrained": "hf-hub:org/swin/w.pth"})
    problems = cfgs.problems()
    assert [p for p in problems if p.startswith("evaluate.checkpoint = hf-hub:org/repo/../x.pt: ")]
    assert not [p for p in problems if "vision_pretrained" in p]   # well formed: not looked up before the stage


def test_the_miss_says_how_to_fetch_the_id(hub_cache):
    with pytest.raises(FileNotFoundError, match=r"\(`hf download org/repo --include 'tok/\*' --revision v2`\)"):
        hub.resolve("hf-hub:org/repo/tok@v2", "model.text_model", folder=True)
    with pytest.raises(FileNotFoundError, match=r"\(`hf download org/repo w.pt`\)"):
        hub.resolve("hf-hub:org/repo/w.pt", "model.clip_weights")


def test_the_fetch_stage_copies_a_hub_tokenizer_and_records_its_commit(hub_cache, tmp_path):
    train_wordpiece(["a forest with many trees", "a beach beside the sea"], 120, tmp_path / "tok")
    commit = add_folder(hub_cache, "org/rs-tokenizer", tmp_path / "tok")
    root = tmp_path / "project"
    root.mkdir()
    done = run_fetch(root, {"dataset": "synthetic", "cache_res": 40, "tokenizer": "hf-hub:org/rs-tokenizer"},
                     {"images": 30, "image_size": 32, "classes": 4})
    assert done is None, done
    assert json.loads((root / "reports" / "data.json").read_text())["hub"] == {"hf-hub:org/rs-tokenizer": commit}
    copied = load_tokenizer(root / "data" / "fetch" / "tokenizer")
    assert copied.get_vocab() == load_tokenizer(tmp_path / "tok").get_vocab()
