"""Every artifact path of the pipeline, written once (dvc.yaml wires the same paths; a test
compares the two). Relative to the checkout the stage runs in (``root``): DVC runs a queued
experiment in a temporary clone, whose outputs are its own. What queued experiments share, the
MLflow store and the downloads, lives under the real repository (``repo``, DVC's ``DVC_ROOT``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pir import hub


@dataclass(frozen=True)
class Paths:
    root: Path
    repo: Path | None = None    # the real repository when ``root`` is a queued experiment's clone

    @property
    def store(self) -> Path:
        """Where the MLflow store lives (pir.pipeline.tracking): the real repository, shared by all clones."""
        return self.repo or self.root

    def stage_folders(self, stage: str) -> tuple[Path, ...]:
        """The folders stage ``stage`` writes into: checked writable before it computes anything."""
        own = {"fetch": (self.fetch, self.downloads), "scene_prior": (self.scene_prior,),
               "train": (self.train, self.train_state), "evaluate": (self.evaluate,), "analyze": (self.analyze,),
               "audit": (self.downloads,),
               # not index_images: that folder is the index's own (pir.search.folder.own_folder), and a
               # folder already holding it would not be empty, so not one the index may claim
               "index": (self.index,)}
        return (*own[stage], self.reports, self.figures)

    # ---- one output folder per stage under data/ (DVC outs), reports/ for what people read
    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def figures(self) -> Path:
        return self.reports / "figures"

    @property
    def downloads(self) -> Path:
        """Raw downloads and extracted archives: outside data/fetch (which DVC deletes before a run)."""
        return self.store / "data" / "downloads"

    # fetch
    @property
    def fetch(self) -> Path:
        return self.data / "fetch"

    @property
    def dataset_json(self) -> Path:
        return self.fetch / "dataset.json"

    @property
    def tokenizer(self) -> Path:
        """fetch always writes the tokenizer here, so training and evaluation use the same vocabulary."""
        return self.fetch / "tokenizer"

    @property
    def data_report(self) -> Path:
        return self.reports / "data.json"

    @property
    def data_samples(self) -> Path:
        return self.figures / "data_samples.png"

    # audit
    @property
    def audit(self) -> Path:
        """reports/audit.json: near-duplicate pairs and shared captions (evaluate reads it with data.exclude_leaked)."""
        return self.reports / "audit.json"

    @property
    def audit_pairs(self) -> Path:
        return self.figures / "audit_pairs.png"

    # scene_prior
    @property
    def scene_prior(self) -> Path:
        return self.data / "scene_prior"

    @property
    def prior(self) -> Path:
        return self.scene_prior / "prior.pt"

    @property
    def prior_report(self) -> Path:
        return self.reports / "scene_prior.json"

    @property
    def prior_confusion(self) -> Path:
        return self.figures / "scene_prior_confusion.png"

    # train
    @property
    def train(self) -> Path:
        return self.data / "train"

    @property
    def best(self) -> Path:
        return self.train / "best.pt"

    @property
    def last(self) -> Path:
        return self.train / "last.pt"

    def checkpoint(self, setting: str) -> Path | str:
        """The checkpoint ``evaluate.checkpoint`` names: "" = the train stage's best; relative paths are
        relative to the checkout; a Hugging Face Hub id (``hf-hub:...``) as it is, for the stage to
        resolve (pir.hub: a layout names no cache)."""
        if not setting:
            return self.best
        if hub.is_hub_id(setting):
            return setting
        path = Path(setting).expanduser()
        return path if path.is_absolute() else self.root / path

    @property
    def train_state(self) -> Path:
        """persist: true in dvc.yaml: the resumable state of an interrupted run."""
        return self.data / "train_state"

    @property
    def train_report(self) -> Path:
        return self.reports / "train.json"

    @property
    def train_curves(self) -> Path:
        return self.reports / "train_curves.csv"

    # evaluate
    @property
    def evaluate(self) -> Path:
        return self.data / "evaluate"

    @property
    def similarity(self) -> Path:
        return self.evaluate / "similarity.npz"

    @property
    def embeddings(self) -> Path:
        return self.evaluate / "embeddings.npz"

    @property
    def evaluation(self) -> Path:
        return self.evaluate / "evaluation.json"

    @property
    def metrics(self) -> Path:
        return self.reports / "metrics.json"

    @property
    def per_class(self) -> Path:
        return self.reports / "per_class.csv"

    @property
    def gallery(self) -> Path:
        return self.figures / "gallery.png"

    # analyze
    @property
    def analyze(self) -> Path:
        return self.data / "analyze"

    @property
    def tsne_points(self) -> Path:
        return self.analyze / "tsne.npz"

    @property
    def analysis(self) -> Path:
        return self.reports / "analysis.json"

    @property
    def tsne_csv(self) -> Path:
        return self.reports / "tsne.csv"

    @property
    def tsne_figure(self) -> Path:
        return self.figures / "tsne.png"

    @property
    def class_similarity(self) -> Path:
        return self.figures / "class_similarity.png"

    # index
    @property
    def index(self) -> Path:
        """The test split's search index (pir.search): `pir serve data/index`."""
        return self.data / "index"

    @property
    def index_images(self) -> Path:
        """The indexed test images, as PNG files (the index's root): its own source/ folder, listed in its
        marker (docs/search-and-geo.md, "Index folder")."""
        return self.index / "source"
