"""Named retrieval protocols: the same similarity matrix scored the ways papers score it.

Published numbers in this field come from different scorers under one name (docs/evaluation.md, "Evaluation protocols"). evaluate computes all of them, every time:

- ``itm``: the released ``itm_eval`` (``pir.evaluation.metrics.retrieval_metrics``): every caption
  is a query with its one image; an image's rank is that of its best-placed own caption.
- ``dedup``: relevance is caption-string identity after normalisation. Each distinct string is
  queried once and candidates are distinct strings: text->image hits any image owning the string,
  image->text hits any string the image owns.
- ``pairwise``: open_clip's validation convention on one caption per image (its first): row i's
  only match is column i.

Each protocol reports the seven keys of ``METRIC_KEYS`` in percent, ranks with the ``itm`` tie rule.
"""

from __future__ import annotations

import numpy as np

from pir.evaluation.metrics import METRIC_KEYS, best_positive_ranks, check_inputs, recalls_from_ranks, retrieval_metrics

PROTOCOLS = ("itm", "dedup", "pairwise")


def _seven(recalls: dict[str, float]) -> dict[str, float]:
    return {k: recalls[k] for k in METRIC_KEYS}


def _first_index(groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Lowest position of each group id in ``groups``; len(groups) where a group never occurs."""
    first = np.full(n_groups, len(groups), dtype=np.int64)
    np.minimum.at(first, groups, np.arange(len(groups), dtype=np.int64))
    return first


def itm_metrics(sims: np.ndarray, txt2img: np.ndarray) -> dict[str, float]:
    return _seven(retrieval_metrics(sims, txt2img))


def dedup_metrics(sims: np.ndarray, txt2img: np.ndarray, key_ids: np.ndarray) -> dict[str, float]:
    """Caption-string relevance, each distinct string once (SkyScript-style de-duplication).

    A string's column is its first caption's: identical normalised strings are identical inputs to PIR's
    text encoder (a CLIP preset reads raw captions: its first caption of the string stands for the others).
    """
    sims, txt2img = check_inputs(sims, txt2img)
    key_ids = np.asarray(key_ids, dtype=np.int64)
    if key_ids.shape != txt2img.shape:
        raise ValueError(f"key_ids must have one id per caption ({txt2img.shape}), got {key_ids.shape}")
    n_keys = int(key_ids.max()) + 1
    strings = sims[:, _first_index(key_ids, n_keys)]                 # [n_images, n_distinct]
    owned_image, owned_key = np.unique(np.stack([txt2img, key_ids]), axis=1)  # (image, string) relevance pairs
    image_ranks = best_positive_ranks(strings, owned_image, owned_key)
    string_ranks = best_positive_ranks(strings.T, owned_key, owned_image)
    return _seven(recalls_from_ranks(image_ranks, string_ranks))


def pairwise_metrics(sims: np.ndarray, txt2img: np.ndarray) -> dict[str, float]:
    """open_clip's row-i-only convention on (image, its first caption); captionless images left out."""
    sims, txt2img = check_inputs(sims, txt2img)
    first = _first_index(txt2img, sims.shape[0])
    images = np.flatnonzero(first < len(txt2img))
    square = sims[np.ix_(images, first[images])]
    diagonal = np.arange(len(images))
    image_ranks = best_positive_ranks(square, diagonal, diagonal)
    text_ranks = best_positive_ranks(square.T, diagonal, diagonal)
    return _seven(recalls_from_ranks(image_ranks, text_ranks))


def all_protocols(sims: np.ndarray, txt2img: np.ndarray, key_ids: np.ndarray) -> dict[str, dict[str, float]]:
    """{protocol: seven keys} for every protocol in PROTOCOLS."""
    return {"itm": itm_metrics(sims, txt2img), "dedup": dedup_metrics(sims, txt2img, key_ids),
            "pairwise": pairwise_metrics(sims, txt2img)}
