"""Print the configuration a run would use, as YAML, without running anything (same as `pir recipe show`).

    python stages/show_config.py                          # params.yaml, resolved
    python stages/show_config.py recipe=paper             # another recipe
    python stages/show_config.py recipe=paper train.lr=1e-4 data.dataset=rsitmd
"""

import sys
from pathlib import Path

from pir_tools.cli import recipe_show

if __name__ == "__main__":
    sys.exit(recipe_show(sys.argv[1:], Path(__file__).resolve().parent.parent))
