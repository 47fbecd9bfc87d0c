"""DVC stage `analyze`: t-SNE and cluster statistics of the common image-text subspace.

One call: pir.pipeline.analyze.run does the work; pir.pipeline.entry.main loads params.yaml, seeds and
turns user errors into one line. dvc.yaml is where the stage's paths and params are wired.
"""
from pathlib import Path

from pir.pipeline.entry import main  # first: it sets OpenMP's wait policy before torch loads
from pir.pipeline import analyze

if __name__ == "__main__":
    main(analyze, Path(__file__).resolve().parent.parent)
