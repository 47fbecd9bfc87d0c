"""The benchmark -> reports/bench.json (same as `pir bench`; see pir_tools.bench).

    python stages/bench.py [--quick] [--skip-paper] [--compile] [--device auto|cpu|cuda] [--out PATH]
"""

from pathlib import Path

from pir_tools.bench import main

if __name__ == "__main__":
    main(root=Path(__file__).resolve().parent.parent)
