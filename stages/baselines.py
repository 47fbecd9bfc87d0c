"""Zero-shot CLIP-family baselines as queued DVC experiments, then a table (same as `pir baselines`;
see pir_tools.baselines)."""

from pathlib import Path

from pir_tools.baselines import main

if __name__ == "__main__":
    main(root=Path(__file__).resolve().parent.parent)
