"""DVC stage `evaluate`: test-split retrieval metrics, the similarity matrix they came from, a gallery.

One call: pir.pipeline.evaluate.run does the work; pir.pipeline.entry.main loads params.yaml, seeds and
turns user errors into one line. dvc.yaml is where the stage's paths and params are wired.
"""
from pathlib import Path

from pir.pipeline.entry import main  # first: it sets OpenMP's wait policy before torch loads
from pir.pipeline import evaluate

if __name__ == "__main__":
    main(evaluate, Path(__file__).resolve().parent.parent)
