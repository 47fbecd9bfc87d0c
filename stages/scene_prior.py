"""DVC stage `scene_prior`: the frozen scene classifier PIR takes its instruction from.

One call: pir.pipeline.scene_prior.run does the work; pir.pipeline.entry.main loads params.yaml, seeds and
turns user errors into one line. dvc.yaml is where the stage's paths and params are wired.
"""
from pathlib import Path

from pir.pipeline.entry import main  # first: it sets OpenMP's wait policy before torch loads
from pir.pipeline import scene_prior

if __name__ == "__main__":
    main(scene_prior, Path(__file__).resolve().parent.parent)
