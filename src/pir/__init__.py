"""PIR: Prior Instruction Representation for remote-sensing image-text retrieval.

The library: ``pir.config`` (typed configs and model presets), ``pir.data``
(datasets, importers, generator, tokenizer), ``pir.models`` (PIR, baseline, losses,
official checkpoints), ``pir.training``, ``pir.evaluation``, ``pir.analysis`` and
``pir.search``. It takes typed configs and paths, and knows no tracking store or
pipeline files. ``pir.pipeline`` turns it into the DVC + MLflow pipeline: params and
recipes, paths, MLflow tracking, seed runs, reports and one ``run`` per stage.
"""

__version__ = "0.1.0"
