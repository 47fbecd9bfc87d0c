"""Retrieval evaluation: the standard metrics (``retrieval_metrics``), extra diagnostics, the gallery figure.

``pir.evaluation.embed`` (embedding a split with a model) is imported on demand so
that the metrics stay usable without torch models.
"""

from pir.evaluation.metrics import retrieval_metrics

__all__ = ["retrieval_metrics"]
