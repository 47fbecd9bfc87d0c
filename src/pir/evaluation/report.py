"""The evaluate stage's report: one similarity matrix, every number computed from it.

``itm`` keys stay at the top level (they are what every paper and `dvc metrics` compare);
the other protocols, the bootstrap interval, rank statistics, duplicate counts and the per-class
table sit beside them (docs/evaluation.md, "Evaluation protocols").
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from pir.data.text import caption_keys, default_caption_key
from pir.evaluation.bootstrap import bootstrap_intervals
from pir.evaluation.metrics import (caption_duplicates, check_inputs, per_class_recall, rank_statistics,
                                    recalls_from_ranks, retrieval_ranks)
from pir.evaluation.protocols import all_protocols


def evaluation_report(sims: np.ndarray, txt2img: np.ndarray, image_labels: np.ndarray,
                      class_names: Sequence[str], captions: Sequence[str],
                      key: Callable[[str], str] = default_caption_key, *, seed: int = 0,
                      n_resamples: int = 1000) -> dict:
    """Everything evaluate reports: the ``itm`` keys first, then ranks, every protocol, the bootstrap
    interval, duplicate counts and the per-class table (docs/evaluation.md, "Evaluation protocols")."""
    sims, txt2img = check_inputs(sims, txt2img)
    if len(captions) != len(txt2img) or len(image_labels) != sims.shape[0]:
        raise ValueError(f"got {len(captions)} captions and {len(image_labels)} labels for a {sims.shape} matrix")
    image_ranks, text_ranks = retrieval_ranks(sims, txt2img)
    _, key_ids = caption_keys(captions, key)
    report: dict = recalls_from_ranks(image_ranks, text_ranks)
    report.update(rank_statistics(image_ranks, text_ranks))
    report["n_images"], report["n_texts"] = int(sims.shape[0]), int(sims.shape[1])
    report["images_without_captions"] = int(np.count_nonzero(np.isinf(image_ranks)))
    report["protocols"] = all_protocols(sims, txt2img, key_ids)
    report["ci95"] = bootstrap_intervals(image_ranks, text_ranks, txt2img, n_resamples=n_resamples, seed=seed)
    report["duplicates"] = caption_duplicates(key_ids, txt2img)
    report["per_class"] = per_class_recall(image_ranks, text_ranks, image_labels, txt2img, class_names)
    return report
