"""The paper's ablation as queued DVC experiments, then a table (same as `pir ablation`; see pir_tools.ablation)."""

from pathlib import Path

from pir_tools.ablation import main

if __name__ == "__main__":
    main(root=Path(__file__).resolve().parent.parent)
