"""DVC stage `index`: the test split indexed with the trained model, for `pir search` / `pir serve data/index`.

One call: pir.pipeline.index.run does the work; pir.pipeline.entry.main loads params.yaml, seeds and
turns user errors into one line. dvc.yaml is where the stage's paths and params are wired.
"""
from pathlib import Path

from pir.pipeline.entry import main  # first: it sets OpenMP's wait policy before torch loads
from pir.pipeline import index

if __name__ == "__main__":
    main(index, Path(__file__).resolve().parent.parent)
