"""Leakage audit: near-duplicate images (perceptual hash) and caption strings shared across splits.

Hash: a DCT perceptual hash (pHash), computed here in numpy/torch rather than with ``imagehash``.
The algorithm is imagehash's ``phash``: grayscale (ITU-R 601 luma) and resize to 4 x ``hash_size``
pixels a side (bilinear, antialiased), 2-D DCT-II, keep the ``hash_size`` x ``hash_size`` lowest frequencies, one bit per
coefficient: above the block's median or not. Doing it ourselves gives the bits of a whole batch
as one matrix straight from the pixel cache (imagehash wants one PIL image at a time and returns
an object per image), which is what the vectorised all-pairs comparison needs, and it costs no
extra dependency. The test suite checks it against ``imagehash.phash`` on the same images.

All pairs: the Hamming distance of two bit rows a, b is |a| + |b| - 2 a.b, so a block of rows
against all rows is one float32 matrix product (exact: every value is an integer <= the number
of bits). RSICD's 10,921 images are 60 million pairs; they go through in blocks of
``BLOCK_ROWS`` rows, so memory stays at a few tens of MB, and only pairs at or under the
threshold (plus each image's nearest cross-split neighbour) are kept.

The threshold and why it is 20 of 256 bits are in docs/evaluation.md, "Leakage audit".
"""

from __future__ import annotations

from typing import Iterator, Sequence

import numpy as np

from pir.data.prepared import SPLITS, ImageRecord
from pir.data.text import caption_keys

BLOCK_ROWS = 1024          # rows per distance block: 1024 x 10,921 float32 = 45 MB
HASH_BATCH = 512           # images per hashing batch
LUMA = (0.299, 0.587, 0.114)   # ITU-R 601, what PIL's convert("L") uses


# --------------------------------------------------------------------------- hashing

def dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II matrix [n, n]: coefficients = D @ signal."""
    k = np.arange(n)[:, None]
    x = np.arange(n)[None, :]
    matrix = np.sqrt(2.0 / n) * np.cos(np.pi * (2 * x + 1) * k / (2 * n))
    matrix[0] /= np.sqrt(2.0)
    return matrix


def phash_bits(pixels: np.ndarray, hash_size: int = 16, batch: int = HASH_BATCH) -> np.ndarray:
    """DCT perceptual hash of uint8 images [n, H, W, 3] -> bool [n, hash_size**2] (row-major low frequencies)."""
    import torch
    import torch.nn.functional as F

    if pixels.ndim != 4 or pixels.shape[-1] != 3:
        raise ValueError(f"pixels must be [n, H, W, 3], got shape {pixels.shape}")
    side = 4 * hash_size
    dct = torch.from_numpy(dct_matrix(side)).float()
    luma = torch.tensor(LUMA, dtype=torch.float32)
    out = np.empty((len(pixels), hash_size * hash_size), dtype=bool)
    with torch.inference_mode():
        for start in range(0, len(pixels), batch):
            chunk = torch.from_numpy(np.array(pixels[start:start + batch]))   # a copy: memmaps are read-only
            # resize first, on uint8 channels-last (torch's fast path, as torchvision's resize), then grayscale:
            # both are linear, so the order only moves the uint8 rounding
            small = F.interpolate(chunk.permute(0, 3, 1, 2), size=(side, side), mode="bilinear", antialias=True,
                                  align_corners=False)
            gray = small.permute(0, 2, 3, 1).float() @ luma     # [b, side, side]
            coeffs = dct @ gray @ dct.T                          # batched 2-D DCT
            low = coeffs[:, :hash_size, :hash_size].reshape(len(gray), -1)
            # imagehash's median (numpy's: the mean of the two middle values)
            out[start:start + batch] = (low > low.quantile(0.5, dim=1, keepdim=True)).numpy()
    return out


# --------------------------------------------------------------------------- distances

def distance_blocks(bits_a: np.ndarray, bits_b: np.ndarray, block: int = BLOCK_ROWS
                    ) -> Iterator[tuple[int, np.ndarray]]:
    """(first row, Hamming distances int32 [rows, len(bits_b)]) for consecutive row blocks of ``bits_a``."""
    b = bits_b.astype(np.float32)
    ones_b = b.sum(1)
    for start in range(0, len(bits_a), block):
        a = bits_a[start:start + block].astype(np.float32)
        shared = a @ b.T
        yield start, np.rint(a.sum(1)[:, None] + ones_b[None, :] - 2 * shared).astype(np.int32)


def hamming_matrix(bits_a: np.ndarray, bits_b: np.ndarray) -> np.ndarray:
    """All distances at once [len(a), len(b)] (small inputs: tests, figures)."""
    blocks = [d for _, d in distance_blocks(bits_a, bits_b)]
    return np.concatenate(blocks) if blocks else np.zeros((0, len(bits_b)), np.int32)


def near_pairs(bits_a: np.ndarray, bits_b: np.ndarray, threshold: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, cols, distances) of every pair of a row of ``bits_a`` and a row of ``bits_b`` at distance <= ``threshold``."""
    rows, cols, dists = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0, np.int32)]
    for start, distances in distance_blocks(bits_a, bits_b):
        r, c = np.nonzero(distances <= threshold)
        rows.append(r + start)
        cols.append(c)
        dists.append(distances[r, c])
    return np.concatenate(rows), np.concatenate(cols), np.concatenate(dists)


# --------------------------------------------------------------------------- the audit

def _pair(files_a, splits_a, i, files_b, splits_b, j, distance) -> dict:
    return {"a": files_a[i], "b": files_b[j], "split_a": splits_a[i], "split_b": splits_b[j], "distance": int(distance)}


def _sorted_pairs(pairs: list[dict]) -> list[dict]:
    return sorted(pairs, key=lambda p: (p["distance"], p["a"], p["b"]))


def _split_order(splits: np.ndarray) -> np.ndarray:
    order = {s: k for k, s in enumerate(SPLITS)}
    return np.array([order.get(s, len(SPLITS)) for s in splits])


def image_pairs(files: Sequence[str], splits: Sequence[str], bits: np.ndarray, threshold: int,
                closest: int = 10) -> dict:
    """Near-duplicate pairs of one dataset in one pass over all pairs: across splits (a in the earlier split),
    within a split, and the ``closest`` nearest cross-split pairs at any distance (one per image: the
    figure, and how far the threshold sits from the closest genuine pairs)."""
    files, splits = list(files), np.asarray(splits, dtype=object)
    rank = _split_order(splits)
    n_bits = bits.shape[1]
    columns = np.arange(len(files))
    nearest = np.full(len(files), -1, np.int64)
    nearest_distance = np.full(len(files), n_bits + 1, np.int32)
    cross, within = [], []
    for start, distances in distance_blocks(bits, bits):
        stop = start + len(distances)
        row_rank = rank[start:stop, None]
        # each unordered pair once: across splits from the earlier split's side, within a split with i < j
        once = (row_rank < rank[None, :]) | ((row_rank == rank[None, :]) & (columns[start:stop, None] < columns))
        for i, j in zip(*np.nonzero((distances <= threshold) & once)):
            i = int(i) + start
            (cross if rank[i] != rank[j] else within).append(
                _pair(files, splits, i, files, splits, j, distances[i - start, j]))
        across = np.where(row_rank != rank[None, :], distances, n_bits + 1)
        best = across.argmin(1)
        nearest_distance[start:stop] = across[np.arange(len(across)), best]
        nearest[start:stop] = np.where(nearest_distance[start:stop] <= n_bits, best, -1)
    seen, closest_pairs = set(), []
    for i in np.argsort(nearest_distance, kind="stable"):
        j = int(nearest[i])
        if j < 0 or len(closest_pairs) == closest:
            break
        a, b = (int(i), j) if rank[i] < rank[j] else (j, int(i))
        if (a, b) not in seen:
            seen.add((a, b))
            closest_pairs.append(_pair(files, splits, a, files, splits, b, nearest_distance[i]))
    return {"cross": _sorted_pairs(cross), "within": _sorted_pairs(within), "closest": closest_pairs}


def shared_captions(records: Sequence[ImageRecord], examples: int = 10) -> dict:
    """Caption strings (normalised as the dedup protocol compares them) that occur in more than one split."""
    captions = [c for r in records for c in r.captions]
    split_of_caption = np.array([SPLITS.index(r.split) for r in records for _ in r.captions], dtype=np.int64)
    image_of_caption = np.array([i for i, r in enumerate(records) for _ in r.captions], dtype=np.int64)
    if not captions:
        return {"strings": 0, "by_split_pair": {}, "captions": {s: 0 for s in SPLITS}, "examples": []}
    normalised, key_ids = caption_keys(captions)
    n_keys = int(key_ids.max()) + 1
    in_split = np.zeros((n_keys, len(SPLITS)), dtype=bool)
    in_split[key_ids, split_of_caption] = True
    shared = in_split.sum(1) > 1
    by_pair = {f"{SPLITS[a]}-{SPLITS[b]}": int((in_split[:, a] & in_split[:, b]).sum())
               for a in range(len(SPLITS)) for b in range(a + 1, len(SPLITS))}
    # captions of a split whose string also occurs in another split (a query the model may have trained on)
    elsewhere = in_split.sum(1)[key_ids] - 1 > 0
    per_split = {s: int((elsewhere & (split_of_caption == k)).sum()) for k, s in enumerate(SPLITS)}
    pairs = np.unique(np.stack([key_ids, image_of_caption, split_of_caption]), axis=1)   # (key, image) once
    images = np.zeros((n_keys, len(SPLITS)), dtype=np.int64)
    np.add.at(images, (pairs[0], pairs[2]), 1)
    text_of = {k: normalised[t] for t, k in enumerate(key_ids)}
    top = [k for k in np.argsort(-images.sum(1), kind="stable") if shared[k]][:examples]
    return {"strings": int(shared.sum()), "by_split_pair": by_pair, "captions": per_split,
            "examples": [{"caption": text_of[k], "images": {s: int(images[k, j]) for j, s in enumerate(SPLITS)
                                                             if images[k, j]}} for k in top]}


def against_pairs(files: Sequence[str], splits: Sequence[str], bits: np.ndarray, other_files: Sequence[str],
                  other_splits: Sequence[str], other_bits: np.ndarray, threshold: int, name: str) -> list[dict]:
    """Pairs at or under ``threshold`` between this dataset (a) and another one (b, splits prefixed ``name/``)."""
    other_splits = [f"{name}/{s}" for s in other_splits]
    return _sorted_pairs([_pair(list(files), list(splits), i, list(other_files), other_splits, j, d)
                          for i, j, d in zip(*near_pairs(bits, other_bits, threshold))])


def leaked_images(pairs: Sequence[dict], split: str = "test", sources: Sequence[str] = ("train", "val")) -> set[str]:
    """Files of ``split`` with a near-duplicate in one of ``sources`` (audit.json near_duplicate_pairs)."""
    leaked = set()
    for p in pairs:
        if p["split_b"] == split and p["split_a"] in sources:
            leaked.add(p["b"])
        if p["split_a"] == split and p["split_b"] in sources:
            leaked.add(p["a"])
    return leaked


def audit_report(records: Sequence[ImageRecord], bits: np.ndarray, threshold: int, closest: int = 10) -> dict:
    """The audit.json body for one dataset (no ``against``): settings, counts, the pairs, shared captions."""
    files = [r.file for r in records]
    splits = [r.split for r in records]
    found = image_pairs(files, splits, bits, threshold, closest)
    by_pair = {f"{SPLITS[a]}-{SPLITS[b]}": sum(1 for p in found["cross"] if (p["split_a"], p["split_b"])
                                               == (SPLITS[a], SPLITS[b]))
               for a in range(len(SPLITS)) for b in range(a + 1, len(SPLITS))}
    return {
        "threshold": int(threshold),
        "hash_bits": int(bits.shape[1]),
        "hash": f"DCT pHash, {int(round(bits.shape[1] ** 0.5))}x{int(round(bits.shape[1] ** 0.5))} low frequencies "
                f"of a {4 * int(round(bits.shape[1] ** 0.5))} px grayscale image",
        "images": {s: splits.count(s) for s in SPLITS},
        "counts": {"cross_split_pairs": len(found["cross"]), "within_split_pairs": len(found["within"]),
                   "by_split_pair": by_pair,
                   "leaked_test_images": len(leaked_images(found["cross"], "test", ("train", "val"))),
                   "leaked_val_images": len(leaked_images(found["cross"], "val", ("train",)))},
        "near_duplicate_pairs": found["cross"],
        "within_split_pairs": found["within"],
        "closest_cross_split_pairs": found["closest"],
        "shared_captions": shared_captions(records),
    }


def pairs_figure(pairs: Sequence[dict], pixels_a: Sequence[np.ndarray], pixels_b: Sequence[np.ndarray],
                 threshold: int, hash_bits: int):
    """The pairs side by side, one row each, titled with file, split and Hamming distance (a matplotlib figure)."""
    from pir import files as pir_files

    plt = pir_files.pyplot()
    rows = max(1, len(pairs))
    height = 2.5 * rows + 0.5
    fig, axes = plt.subplots(rows, 2, figsize=(5.2, height), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for row, (pair, a, b) in enumerate(zip(pairs, pixels_a, pixels_b)):
        verdict = "near-duplicate" if pair["distance"] <= threshold else "distinct"
        axes[row, 0].imshow(a)
        axes[row, 0].set_title(f"{pair['split_a']}: {pair['a']}", fontsize=7)
        axes[row, 1].imshow(b)
        axes[row, 1].set_title(f"{pair['split_b']}: {pair['b']}\ndistance {pair['distance']}/{hash_bits}: {verdict}",
                               fontsize=7, color="tab:red" if verdict == "near-duplicate" else "black")
    if not pairs:
        axes[0, 0].text(0.5, 0.5, "no pairs across splits", ha="center", va="center")
    fig.suptitle(f"Closest image pairs across splits (near-duplicate at <= {threshold} of {hash_bits} bits)",
                 fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / height))   # room for the suptitle
    return fig


def read_audit(path) -> dict:
    """reports/audit.json, or a one-line error naming it."""
    import json
    from pathlib import Path

    path = Path(path)
    try:
        audit = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: leakage audit not found (run the audit stage, or set "
                                "data.exclude_leaked: false)") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(audit, dict) or not isinstance(audit.get("near_duplicate_pairs"), list):
        raise ValueError(f"{path}: not a leakage audit (no near_duplicate_pairs list)")
    return audit


def without_leaked(records: Sequence[ImageRecord], test, audit: dict):
    """(``test`` SplitView less its images with a near-duplicate in train or val, what was dropped)."""
    leaked = leaked_images(audit["near_duplicate_pairs"], "test", ("train", "val"))
    drop = [pos for pos, row in enumerate(test.image_rows) if records[row].file in leaked]
    return test.without_images(drop), {"exclude_leaked": True, "excluded_test_images": len(drop),
                                       "excluded_files": sorted(records[test.image_rows[p]].file for p in drop),
                                       "threshold": audit.get("threshold"), "hash_bits": audit.get("hash_bits")}
