"""DVC stage `fetch`: the canonical dataset (synthetic, RSITMD or RSICD), its tokenizer and data report.

One call: pir.pipeline.fetch.run does the work; pir.pipeline.entry.main loads params.yaml, seeds and
turns user errors into one line. dvc.yaml is where the stage's paths and params are wired.
"""
from pathlib import Path

from pir.pipeline.entry import main  # first: it sets OpenMP's wait policy before torch loads
from pir.pipeline import fetch

if __name__ == "__main__":
    main(fetch, Path(__file__).resolve().parent.parent)
