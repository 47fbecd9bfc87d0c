"""PIR's losses over the whole (all-gathered) batch, vectorised.

Every loss takes ``rank`` / ``world_size`` explicitly (open_clip style). With
world_size > 1 the local features are gathered from every rank with gradients
flowing back to the local slice (``pir.models.collectives.all_gather_with_grad``), so
a DDP step equals a single-process step on the same global batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pir.models.collectives import all_gather_no_grad, all_gather_with_grad


def gather_batch(image_emb: torch.Tensor, text_emb: torch.Tensor, *keys: torch.Tensor,
                 rank: int = 0, world_size: int = 1) -> tuple[torch.Tensor, ...]:
    """(all images, all texts, *all keys) in rank order; keys (ids, labels) carry no gradient."""
    return (all_gather_with_grad(image_emb, rank, world_size),
            all_gather_with_grad(text_emb, rank, world_size),
            *(all_gather_no_grad(k, world_size) for k in keys))


def contrastive_loss(image_all: torch.Tensor, text_all: torch.Tensor, image_ids_all: torch.Tensor,
                     temp: torch.Tensor) -> torch.Tensor:
    """Multi-positive InfoNCE, both directions averaged (official get_contr_loss).

    Pair (i, j) is positive when image i and caption j share an image id; the
    target distribution spreads uniformly over a row's positives.
    """
    logits = image_all @ text_all.t() / temp
    positives = torch.eq(image_ids_all.view(-1, 1), image_ids_all.view(1, -1)).float()
    targets = positives / positives.sum(dim=1, keepdim=True)
    loss_i2t = -(F.log_softmax(logits, dim=1) * targets).sum(dim=1).mean()
    loss_t2i = -(F.log_softmax(logits.t(), dim=1) * targets).sum(dim=1).mean()
    return (loss_i2t + loss_t2i) / 2


def _diagonal_nll(logits: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Cross-entropy with target = own column, over valid rows, softmax over valid columns only.

    Invalid columns get the dtype's lowest finite value rather than -inf and
    rows are weighted rather than indexed: no NaN even with no valid sample,
    static shapes, no host sync (torch.compile friendly).
    """
    logits = logits.masked_fill(~valid.view(1, -1), torch.finfo(logits.dtype).min)
    own = F.log_softmax(logits, dim=1).diagonal()
    weights = valid.to(own.dtype)
    return -(own * weights).sum() / weights.sum().clamp(min=1)


def affiliation_loss(image_all: torch.Tensor, text_all: torch.Tensor, scene_labels_all: torch.Tensor,
                     temp2: torch.Tensor) -> torch.Tensor:
    """Cluster-wise affiliation loss (official get_affil_loss), vectorised; label -1 = unknown scene.

    Each sample's centres are the mean image and mean text embedding of all
    samples with its scene label. Samples with an unknown scene are dropped
    from both rows and columns.

    Two deliberate facts:
    - The t2i term reproduces the official transpose exactly: it applies the
      softmax to ``(text_all @ image_centres.T).T``, i.e. for image centre j the
      softmax runs over captions i with target i = j.
    - Centres come from the gathered global batch. The official code computes
      them from each rank's local batch before gathering, so under DDP its value
      differs; on one process both agree.
    """
    valid = scene_labels_all >= 0
    labels = scene_labels_all.view(-1, 1)
    same_scene = (torch.eq(labels, labels.t()) & valid.view(-1, 1) & valid.view(1, -1)).to(image_all.dtype)
    counts = same_scene.sum(dim=1, keepdim=True).clamp(min=1)  # invalid rows: 0 -> avoid 0/0
    image_centres = same_scene @ image_all / counts
    text_centres = same_scene @ text_all / counts
    img2txt_centre = image_all @ text_centres.t() / temp2
    txt2img_centre = text_all @ image_centres.t() / temp2
    loss_i2t = _diagonal_nll(img2txt_centre, valid)
    loss_t2i = _diagonal_nll(txt2img_centre.t(), valid)
    return (loss_i2t + loss_t2i) / 2


def triplet_loss(image_all: torch.Tensor, text_all: torch.Tensor, image_ids_all: torch.Tensor,
                 margin: float = 0.2, hardest: bool = False) -> torch.Tensor:
    """VSE hinge loss on cosine scores, summed (official get_triplet_loss).

    Negatives exclude every pair sharing an image id (the official code only
    excludes the diagonal; with distinct ids per batch both agree).
    """
    scores = image_all @ text_all.t()
    positive = scores.diagonal().view(-1, 1)
    same_image = torch.eq(image_ids_all.view(-1, 1), image_ids_all.view(1, -1))
    cost_caption = (margin + scores - positive).clamp(min=0).masked_fill(same_image, 0)
    cost_image = (margin + scores - positive.t()).clamp(min=0).masked_fill(same_image, 0)
    if hardest:
        return cost_caption.max(dim=1).values.sum() + cost_image.max(dim=0).values.sum()
    return cost_caption.sum() + cost_image.sum()
