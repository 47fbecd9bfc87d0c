"""DVC stage `audit`: near-duplicate images and shared captions across the splits (reports/audit.json).

One call: pir.pipeline.audit.run does the work; pir.pipeline.main loads params.yaml, seeds and
turns user errors into one line. dvc.yaml is where the stage's paths and params are wired.
"""
from pathlib import Path

from pir.pipeline import main, audit

if __name__ == "__main__":
    main(audit, Path(__file__).resolve().parent.parent)
