"""DVC stage `audit`: near-duplicate images and shared captions across the splits (reports/audit.json).

One call: pir.pipeline.audit.run does the work; pir.pipeline.entry.main loads params.yaml, seeds and
turns user errors into one line. dvc.yaml is where the stage's paths and params are wired.
"""
from pathlib import Path

from pir.pipeline.entry import main  # first: it sets OpenMP's wait policy before torch loads
from pir.pipeline import audit

if __name__ == "__main__":
    main(audit, Path(__file__).resolve().parent.parent)
