"""PIR: Prior Instruction Representation for remote-sensing image-text retrieval.

The library behind the DVC pipeline: ``pir.data`` (datasets, importers,
generator, tokenizer), ``pir.models`` (PIR, baseline, losses, official
checkpoints), ``pir.training``, ``pir.evaluation``, ``pir.analysis`` and
``pir.tracking`` (MLflow). Stage scripts in ``stages/`` own paths and params.
"""

__version__ = "0.1.0"
