"""DVC stage `train`: PIR (or the baseline) trained, the epoch chosen on val; re-runs itself under torchrun on several GPUs.

One call: pir.pipeline.train.run does the work; pir.pipeline.entry.main loads params.yaml, seeds and
turns user errors into one line. dvc.yaml is where the stage's paths and params are wired.
"""
from pathlib import Path

from pir.pipeline.entry import main  # first: it sets OpenMP's wait policy before torch loads
from pir.pipeline import train

if __name__ == "__main__":
    main(train, Path(__file__).resolve().parent.parent)
