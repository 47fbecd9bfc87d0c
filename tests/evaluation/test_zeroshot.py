"""Zero-shot scene classification (pir.evaluation.zeroshot, `pir zeroshot`): readable class names and
RemoteCLIP's templates, the accuracy numbers on a hand-made example, the prompt ensemble of a real
model, and the command end to end on class folders, an archive, a prepared dataset, multispectral
EuroSAT files and released-CLIP-style weights, with its JSON, figure and MLflow run.

Models are saved random-init ones (the tiny PIR preset, open_clip's PIR-CLIP-tiny): the numbers only
have to be valid accuracies, and equal where the same images meet the same model twice.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pir.config import model_config
from pir.data.text import load_tokenizer
from pir.evaluation.class_names import (EUROSAT_TEMPLATES, KNOWN_DATASETS, OVERHEAD_TEMPLATES, RESISC45_TEMPLATES,
                                        default_templates, readable_name, readable_names, recognise_dataset)
from pir.evaluation.zeroshot import check_templates, class_embeddings, classification_report
from pir.models import create_model
from pir.models.checkpoint import save_checkpoint
from pir_tools.zeroshot import main as zeroshot_main
from tests.evaluation.test_stages import make_dataset

PNG = b"\x89PNG\r\n\x1a\n"
# Class folders spelled as three different datasets spell them.
FOLDERS = ("storagetanks", "BaseballField", "dense_residential")


# --------------------------------------------------------------------------- names and templates

def test_class_names_read_as_words_whatever_the_spelling():
    assert readable_name("storagetanks") == "storage tanks"          # UCM, RSICD: no separator to split on
    assert readable_name("denseresidential") == "dense residential"
    assert readable_name("baseballfield") == "baseball field"
    assert readable_name("StorageTanks") == "storage tanks"          # AID
    assert readable_name("AnnualCrop") == "annual crop"              # EuroSAT
    assert readable_name("Forest") == "forest"
    assert readable_name("golf_course") == "golf course"             # RESISC45
    assert readable_name("railwayStation") == "railway station"      # WHU-RS19
    assert readable_name("sea-ice  cover") == "sea ice cover"        # the fallback: separators and CamelCase
    assert readable_name("HTTPServerRoom") == "http server room"
    assert {name: len(classes) for name, classes in KNOWN_DATASETS.items()} == {
        "AID": 30, "RESISC45": 45, "UCM": 21, "WHU-RS19": 19, "EuroSAT": 10, "RSICD": 30}
    for classes in KNOWN_DATASETS.values():   # every known class reads as lower-case words
        assert all(name.replace(" ", "").isalpha() and name == name.lower() for name in readable_names(classes))
    with pytest.raises(ValueError, match="'StorageTanks' and 'storage_tanks' both read 'storage tanks'"):
        readable_names(["StorageTanks", "storage_tanks"])


def test_remoteclip_templates_per_dataset():
    assert recognise_dataset([c.lower() for c in KNOWN_DATASETS["AID"]], "AID_dataset") == "AID"
    assert recognise_dataset(KNOWN_DATASETS["RSICD"], "rsicd") == "RSICD"     # the name wins over AID's classes
    assert recognise_dataset(["a", "b"], "my_scenes") == "my_scenes"
    assert default_templates("RESISC45") == RESISC45_TEMPLATES and len(RESISC45_TEMPLATES) == 18
    assert RESISC45_TEMPLATES[:2] == ("satellite imagery of {}.", "aerial imagery of {}.")
    assert RESISC45_TEMPLATES[-1] == "aerial view of the {}."
    assert default_templates("EuroSAT") == EUROSAT_TEMPLATES
    assert default_templates("UCM") == default_templates("synthetic") == OVERHEAD_TEMPLATES
    with pytest.raises(ValueError, match="needs exactly one"):
        check_templates(["a photo of a class"])


# --------------------------------------------------------------------------- the numbers

def test_accuracies_of_a_hand_made_score_matrix():
    classes = ["a", "b", "c", "d", "e", "f"]
    scores = np.array([[9, 1, 2, 3, 4, 5],     # label a: first            -> top-1 and top-5 hit
                       [9, 7, 8, 1, 2, 3],     # label b: third            -> top-5 hit only
                       [9, 8, 1, 7, 6, 5],     # label c: last of six      -> miss
                       [8, 9, 1, 2, 3, 4]],    # label a: second           -> top-5 hit only
                      dtype=np.float32)
    report = classification_report(scores, np.array([0, 1, 2, 0]), classes)
    assert report["top1"] == 25.0 and report["top5"] == 75.0 and report["top5_k"] == 5
    assert report["per_class"]["a"] == {"images": 2, "top1": 50.0}
    assert report["per_class"]["b"] == {"images": 1, "top1": 0.0}
    assert report["per_class"]["d"] == {"images": 0, "top1": None}
    assert report["mean_per_class"] == pytest.approx(50 / 3)           # a, b and c have images
    assert report["confusion"][0] == [1, 1, 0, 0, 0, 0] and report["confusion"][2] == [1, 0, 0, 0, 0, 0]
    # fewer than five classes: "top5" is top-C; a tie goes to the class listed first
    tied = classification_report(np.array([[1.0, 1.0, 0.0]]), np.array([1]), ["x", "y", "z"])
    assert (tied["top1"], tied["top5"], tied["top5_k"]) == (0.0, 100.0, 3)
    with pytest.raises(ValueError, match="labels must lie in 0..2"):
        classification_report(np.zeros((1, 3)), np.array([3]), ["x", "y", "z"])


def test_a_class_embedding_is_the_renormalised_mean_of_its_unit_prompt_embeddings(project):
    from pir.search.encoder import load_encoder

    encoder = load_encoder(project / "data/train/best.pt")
    templates = ["a {} from above.", "an overhead view of the {}"]
    got = class_embeddings(encoder.encode_texts, ["airport", "storage tanks"], templates, batch_size=3)
    for row, name in zip(got, ["airport", "storage tanks"]):
        each = np.stack([encoder.encode_texts([t.replace("{}", name)])[0] for t in templates])
        mean = (each / np.linalg.norm(each, axis=1, keepdims=True)).mean(axis=0)
        np.testing.assert_allclose(row, mean / np.linalg.norm(mean), atol=1e-5)
    assert got.shape == (2, encoder.dim) and got.dtype == np.float32


# --------------------------------------------------------------------------- pir zeroshot

@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """data/fetch (a prepared dataset and its tokenizer) and data/train/best.pt (tiny, random init)."""
    root = tmp_path_factory.mktemp("zeroshot_project")
    make_dataset(root / "data" / "fetch")
    vocab = len(load_tokenizer(root / "data" / "fetch" / "tokenizer"))
    torch.manual_seed(0)
    cfg = model_config("tiny", vocab_size=vocab, image_size=32, filter_size=2)
    save_checkpoint(root / "data" / "train" / "best.pt", create_model(cfg), cfg, epoch=1, model_key="zs-tests")
    return root


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("scenes") / "my_scenes"
    rng = np.random.default_rng(0)
    for label, name in enumerate(FOLDERS):
        (folder / name).mkdir(parents=True)
        for i in range(2):
            pixels = np.full((40, 40, 3), 70 * label, np.uint8) + rng.integers(0, 60, (40, 40, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / name / f"{name}_{i}.png")
    return folder


def run_cli(project: Path, *argv) -> int:
    return zeroshot_main([str(a) for a in argv], root=project)


def zeroshot_runs(project: Path) -> list:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("pir").experiment_id],
                              filter_string="tags.dvc_stage = 'zeroshot'", order_by=["attributes.start_time ASC"])
    return [(run, [a.path for a in client.list_artifacts(run.info.run_id, "zeroshot")]) for run in runs]


def test_class_folders_with_a_pir_checkpoint_give_json_figure_and_mlflow_run(project, scenes, tmp_path, capsys):
    out = tmp_path / "zs.json"
    assert run_cli(project, scenes, "--checkpoint", project / "data/train/best.pt", "--out", out) == 0
    result = json.loads(out.read_text())
    assert result["source_classes"] == ["BaseballField", "dense_residential", "storagetanks"]   # folder order
    assert result["classes"] == ["baseball field", "dense residential", "storage tanks"]
    assert result["images"] == 6 and result["templates"] == list(OVERHEAD_TEMPLATES)
    assert 0 <= result["top1"] <= result["top5"] == 100.0 and result["top5_k"] == 3
    assert sum(sum(row) for row in result["confusion"]) == 6
    assert all(entry["images"] == 2 for entry in result["per_class"].values())
    assert result["dataset"] == {"source": str(scenes), "kind": "class folders", "name": "my_scenes",
                                 "split": None, "bands": None}
    assert result["checkpoint"]["format"] == "pir" and result["checkpoint"]["model_key"] == "zs-tests"
    assert len(result["checkpoint"]["sha256"]) == 64 and result["unreadable"] == []
    assert out.with_suffix(".png").read_bytes()[:8] == PNG
    assert f"top-1 {result['top1']:.2f}%" in capsys.readouterr().out
    run, artifacts = zeroshot_runs(project)[-1]
    assert run.info.run_name.endswith(" · zeroshot") and run.data.metrics["zeroshot_top1"] == result["top1"]
    assert run.data.params["zeroshot.checkpoint"] == str(project / "data/train/best.pt")
    assert sorted(artifacts) == ["zeroshot/zs.json", "zeroshot/zs.png"]
    assert "pir_model_key" not in run.data.tags     # evaluate must never reopen this run as the model's


def test_an_archive_of_class_folders_scores_as_the_folder(project, scenes, tmp_path):
    archive = tmp_path / "my_scenes.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(scenes.rglob("*.png")):
            zf.write(path, path.relative_to(scenes.parent))
    folder_out, archive_out = tmp_path / "folder.json", tmp_path / "archive.json"
    checkpoint = project / "data/train/best.pt"
    assert run_cli(project, scenes, "--checkpoint", checkpoint, "--out", folder_out) == 0
    assert run_cli(project, archive, "--checkpoint", checkpoint, "--out", archive_out) == 0
    from_folder, from_archive = json.loads(folder_out.read_text()), json.loads(archive_out.read_text())
    assert from_archive["dataset"]["kind"] == "archive"
    assert (from_archive["top1"], from_archive["confusion"]) == (from_folder["top1"], from_folder["confusion"])
    assert (project / "data/downloads/my_scenes/my_scenes/storagetanks/storagetanks_0.png").is_file()


def test_a_prepared_dataset_scores_its_split_scene_labels(project, tmp_path):
    out = tmp_path / "prepared.json"
    assert run_cli(project, project / "data/fetch", "--checkpoint", project / "data/train/best.pt",
                   "--out", out, "--split", "test") == 0
    result = json.loads(out.read_text())
    # make_dataset: 12 test images, one of unknown scene
    assert result["images"] == 11 and result["classes"] == ["airport", "beach", "forest"]
    assert result["dataset"]["kind"] == "prepared" and result["dataset"]["split"] == "test"
    assert result["dataset"]["name"] == "synthetic"


def test_released_clip_weights_load_with_a_preset(project, scenes, tmp_path, capsys):
    from pir.models.clip import create_clip

    torch.manual_seed(0)
    weights = tmp_path / "my_clip.pt"     # a plain open_clip state dict, as RemoteCLIP and GeoRSCLIP ship theirs
    torch.save(create_clip("PIR-CLIP-tiny").state_dict(), weights)
    out = tmp_path / "clip.json"
    assert run_cli(project, scenes, "--checkpoint", weights, "--out", out) == 1
    message = capsys.readouterr().err.strip()
    assert "\n" not in message and "--preset" in message and str(weights) in message
    assert run_cli(project, scenes, "--checkpoint", weights, "--out", out, "--preset", "clip-tiny",
                   "--template", "a photo of {}.", "--template", "an aerial view of the {}") == 0
    result = json.loads(out.read_text())
    assert result["checkpoint"]["format"] == "clip" and result["checkpoint"]["preset"] == "clip-tiny"
    assert result["templates"] == ["a photo of {}.", "an aerial view of the {}"]
    assert 0 <= result["top1"] <= 100 and result["images"] == 6


def test_eurosat_multispectral_files_are_read_as_true_colour(project, tmp_path):
    import tifffile

    folder = tmp_path / "EuroSAT_MS"
    rng = np.random.default_rng(0)
    for name in KNOWN_DATASETS["EuroSAT"]:
        (folder / name).mkdir(parents=True)
        bands = rng.integers(0, 4000, (16, 16, 13), dtype=np.uint16)    # 13 Sentinel-2 bands, interleaved
        tifffile.imwrite(folder / name / f"{name}_1.tif", bands, photometric="minisblack", planarconfig="contig")
    out = tmp_path / "eurosat.json"
    assert run_cli(project, folder, "--checkpoint", project / "data/train/best.pt", "--out", out) == 0
    result = json.loads(out.read_text())
    assert result["dataset"]["name"] == "EuroSAT" and result["dataset"]["bands"] == [4, 3, 2]
    assert result["templates"] == list(EUROSAT_TEMPLATES) and result["images"] == 10
    assert result["classes"][0] == "annual crop" and result["top5_k"] == 5


def test_bad_sources_fail_in_one_line(project, scenes, tmp_path, capsys):
    checkpoint = project / "data/train/best.pt"

    def fails(source, *extra) -> str:
        assert run_cli(project, source, "--checkpoint", checkpoint, "--out", tmp_path / "x.json", *extra) == 1
        message = capsys.readouterr().err.strip().splitlines()[-1]   # after the progress bar, if any
        assert message.startswith("pir zeroshot: ")
        return message

    assert "not found" in fails(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    assert "found 0 class folders, 0 images" in fails(tmp_path / "empty")
    (tmp_path / "one" / "forest").mkdir(parents=True)
    Image.new("RGB", (32, 32)).save(tmp_path / "one" / "forest" / "a.png")
    assert "found 1 class folder, 1 images" in fails(tmp_path / "one")
    assert "needs exactly one {}" in fails(scenes, "--template", "a photo")

    broken = tmp_path / "broken"
    for name in ("beach", "forest"):
        (broken / name).mkdir(parents=True)
        Image.new("RGB", (32, 32)).save(broken / name / "ok.png")
    (broken / "forest" / "zz.png").write_bytes(b"not a png")
    assert f"{broken / 'forest' / 'zz.png'}: unreadable image" in fails(broken)
    assert not (tmp_path / "x.json").exists()
    out = tmp_path / "skipped.json"
    assert run_cli(project, broken, "--checkpoint", checkpoint, "--out", out, "--skip-unreadable") == 0
    result = json.loads(out.read_text())
    assert result["images"] == 2 and result["unreadable"][0]["image"] == str(broken / "forest" / "zz.png")
    assert f"unreadable: {broken / 'forest' / 'zz.png'}" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        run_cli(project, scenes, "--checkpoint", checkpoint, "--out", tmp_path / "x.png")
