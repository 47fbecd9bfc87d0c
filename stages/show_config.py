"""Print the configuration a run would use, as YAML, without running anything.

    python stages/show_config.py                          # params.yaml, resolved
    python stages/show_config.py recipe=paper             # another recipe
    python stages/show_config.py recipe=paper train.lr=1e-4 data.dataset=rsitmd

Overrides use the same key=value form as `dvc exp run -S`. Problems that would stop
the pipeline (a missing weights file, say) are listed on stderr after the YAML.
"""

from __future__ import annotations

import sys

import common
from pir.params import PipelineConfig, apply_overrides, load_params


def main(argv: list[str]) -> int:
    try:
        cfgs = PipelineConfig.from_params(apply_overrides(load_params(common.ROOT / "params.yaml"), argv))
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(cfgs.to_yaml(), end="")
    for problem in cfgs.problems():
        print(f"# before running: {problem}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
