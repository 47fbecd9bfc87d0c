"""Typed configuration of every part of the library: frozen dataclasses, one module per concern.

- :mod:`pir.config.values`   ``from_mapping`` (a mapping into a config: types coerced, ranges checked, one-line
  errors), ``coerce``, ``check``, ``to_dict``
- :mod:`pir.config.data`     ``SyntheticConfig``, ``DataConfig`` and the image and archive safety caps
- :mod:`pir.config.model`    ``ModelConfig`` (the PIR architecture), CLIP's normalisation constants
- :mod:`pir.config.presets`  the named model presets (``PRESETS``: paper, tiny, clip-*) and ``model_config``
- :mod:`pir.config.train`    ``TrainConfig``
- :mod:`pir.config.stages`   ``ScenePriorConfig``, ``EvalConfig``, ``AuditConfig``, ``AnalyzeConfig``
- :mod:`pir.config.runtime`  ``RuntimeConfig`` (threads, size ceilings), devices and precisions

The library only ever receives these dataclasses, never a raw dict: the pipeline layer resolves its
params and recipes into them (``pir.pipeline.params``), and tests and tools build them directly
(``TrainConfig(lr=1e-3)``, ``model_config("tiny", embed_dim=64)``). Field comments say what each
option does. A field a recipe sets (``src/pir/recipes/*.yaml``) has one home, the recipe: the dataclass
default is the ``cpu`` recipe's value (the default run's), and a test proves that every recipe and
the dataclasses agree (tests/test_recipe_defaults.py). Every name below is importable from
``pir.config`` itself.
"""

from pir.config.values import MAX_INT, OUT_OF_RANGE, check, check_choice, coerce, from_mapping, shown, to_dict
from pir.config.runtime import DEVICES, MAX_THREADS, PRECISIONS, RuntimeConfig, effective_precision
from pir.config.data import (DATASETS, DEFAULT_MAX_ARCHIVE_BYTES, DEFAULT_MAX_ARCHIVE_RATIO, DEFAULT_MAX_PIXELS,
                             DataConfig, SyntheticConfig)
from pir.config.model import CLIP_ACTIVATIONS, CLIP_MEAN, CLIP_STD, ModelConfig
from pir.config.presets import (CLIP_B16, CLIP_B32, CLIP_H14, CLIP_L14, CLIP_PRESETS, CLIP_RN50, CLIP_TINY, PAPER,
                                PRESETS, TINY, model_config)
from pir.config.train import SCHEDULES, TrainConfig
from pir.config.stages import AnalyzeConfig, AuditConfig, EvalConfig, ScenePriorConfig

__all__ = [
    "MAX_INT", "OUT_OF_RANGE", "check", "check_choice", "coerce", "from_mapping", "shown", "to_dict",
    "DEVICES", "MAX_THREADS", "PRECISIONS", "RuntimeConfig", "effective_precision",
    "DATASETS", "DEFAULT_MAX_ARCHIVE_BYTES", "DEFAULT_MAX_ARCHIVE_RATIO", "DEFAULT_MAX_PIXELS", "DataConfig",
    "SyntheticConfig",
    "CLIP_ACTIVATIONS", "CLIP_MEAN", "CLIP_STD", "ModelConfig",
    "CLIP_B16", "CLIP_B32", "CLIP_H14", "CLIP_L14", "CLIP_PRESETS", "CLIP_RN50", "CLIP_TINY", "PAPER", "PRESETS",
    "TINY", "model_config",
    "SCHEDULES", "TrainConfig",
    "AnalyzeConfig", "AuditConfig", "EvalConfig", "ScenePriorConfig",
]
