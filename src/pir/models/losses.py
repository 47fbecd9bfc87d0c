"""PIR's losses over the whole (all-gathered) batch, vectorised.

Every loss takes ``rank`` / ``world_size`` explicitly (open_clip style). With
world_size > 1 the local features are gathered from every rank with gradients
flowing back to the local slice (``pir.models.collectives.all_gather_with_grad``), so
a DDP step equals a single-process step on the same global batch.

``rows`` (``train.local_loss``, open_clip's local_loss): the rank scores only its own rows
of the gathered batch against every column, O(local x global) logits instead of
O(global^2), and returns its share of the loss, scaled so that the mean over the ranks
is the global-batch loss. DDP averages gradients, so the step is still the
single-process step (docs/scaling.md, "Training on many GPUs and nodes").
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


def local_rows(rank: int, batch: int) -> slice:
    """This rank's rows of the gathered batch (gathers concatenate in rank order)."""
    return slice(rank * batch, (rank + 1) * batch)


def contrastive_loss(image_all: torch.Tensor, text_all: torch.Tensor, image_ids_all: torch.Tensor,
                     temp: torch.Tensor, rows: slice | None = None) -> torch.Tensor:
    """Multi-positive InfoNCE, both directions averaged (official get_contr_loss).

    Pair (i, j) is positive when image i and caption j share an image id; the
    target distribution spreads uniformly over a row's positives. ``rows``: only
    those images and captions as queries (their mean; module doc).
    """
    if rows is not None:
        return _local_contrastive_loss(image_all, text_all, image_ids_all, temp, rows)
    logits = image_all @ text_all.t() / temp
    positives = torch.eq(image_ids_all.view(-1, 1), image_ids_all.view(1, -1)).float()
    targets = positives / positives.sum(dim=1, keepdim=True)
    loss_i2t = -(F.log_softmax(logits, dim=1) * targets).sum(dim=1).mean()
    loss_t2i = -(F.log_softmax(logits.t(), dim=1) * targets).sum(dim=1).mean()
    return (loss_i2t + loss_t2i) / 2


def _local_contrastive_loss(image_all: torch.Tensor, text_all: torch.Tensor, image_ids_all: torch.Tensor,
                            temp: torch.Tensor, rows: slice) -> torch.Tensor:
    """contrastive_loss over the queries ``rows``: [R, N] logits each way. The positives matrix is
    symmetric, so row j of the caption side has the same targets as row j of the image side."""
    logits_i2t = image_all[rows] @ text_all.t() / temp
    logits_t2i = text_all[rows] @ image_all.t() / temp
    positives = torch.eq(image_ids_all[rows].view(-1, 1), image_ids_all.view(1, -1)).float()
    targets = positives / positives.sum(dim=1, keepdim=True)
    loss_i2t = -(F.log_softmax(logits_i2t, dim=1) * targets).sum(dim=1).mean()
    loss_t2i = -(F.log_softmax(logits_t2i, dim=1) * targets).sum(dim=1).mean()
    return (loss_i2t + loss_t2i) / 2


def _diagonal_nll(logits: torch.Tensor, valid: torch.Tensor, offset: int = 0) -> torch.Tensor:
    """Cross-entropy with target = own column, over valid rows, softmax over valid columns only.

    ``logits`` [R, N]: rows are samples ``offset .. offset+R-1`` of the N columns' batch (R = N,
    offset 0: the whole batch). The sum is divided by the batch's valid count times R/N, so the
    R-row pieces of a batch average to the whole batch's value (local loss, module doc).
    Invalid columns get the dtype's lowest finite value rather than -inf and
    rows are weighted rather than indexed: no NaN even with no valid sample,
    static shapes, no host sync (torch.compile friendly).
    """
    logits = logits.masked_fill(~valid.view(1, -1), torch.finfo(logits.dtype).min)
    own = F.log_softmax(logits, dim=1).diagonal(offset)
    weights = valid.to(own.dtype)
    share = own.shape[0] / valid.shape[0]
    return -(own * weights[offset:offset + own.shape[0]]).sum() / (weights.sum().clamp(min=1) * share)


def _scene_centres(embeddings: torch.Tensor, labels: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """[N, D]: each sample's scene centre (mean of the valid samples with its label; 0 when invalid).

    Sums per group with index_add over a group id (the first position of the label among the
    sorted labels): O(N x D) memory, where affiliation_loss's same-scene matrix is N x N.
    """
    group = torch.searchsorted(labels.sort().values, labels)
    weights = valid.to(embeddings.dtype)
    sums = torch.zeros_like(embeddings).index_add(0, group, embeddings * weights.view(-1, 1))
    counts = torch.zeros_like(weights).index_add(0, group, weights).clamp(min=1)
    return sums[group] / counts[group].view(-1, 1)


def affiliation_loss(image_all: torch.Tensor, text_all: torch.Tensor, scene_labels_all: torch.Tensor,
                     temp2: torch.Tensor, rows: slice | None = None) -> torch.Tensor:
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

    ``rows``: only those samples as queries, centres from the whole batch (module doc).
    """
    valid = scene_labels_all >= 0
    if rows is not None:
        return _local_affiliation_loss(image_all, text_all, scene_labels_all, valid, temp2, rows)
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


def _local_affiliation_loss(image_all: torch.Tensor, text_all: torch.Tensor, labels: torch.Tensor,
                            valid: torch.Tensor, temp2: torch.Tensor, rows: slice) -> torch.Tensor:
    """affiliation_loss over the queries ``rows``: images against every text centre, and (the
    transposed term) their image centres against every caption, [R, N] each."""
    text_centres = _scene_centres(text_all, labels, valid)
    image_centres = _scene_centres(image_all, labels, valid)[rows]
    loss_i2t = _diagonal_nll(image_all[rows] @ text_centres.t() / temp2, valid, rows.start)
    loss_t2i = _diagonal_nll(image_centres @ text_all.t() / temp2, valid, rows.start)
    return (loss_i2t + loss_t2i) / 2


def triplet_loss(image_all: torch.Tensor, text_all: torch.Tensor, image_ids_all: torch.Tensor,
                 margin: float = 0.2, hardest: bool = False, rows: slice | None = None) -> torch.Tensor:
    """VSE hinge loss on cosine scores, summed (official get_triplet_loss).

    Negatives exclude every pair sharing an image id (the official code only
    excludes the diagonal; with distinct ids per batch both agree). ``rows``: only
    those images and captions as anchors, the sum times N/R (module doc).
    """
    if rows is not None:
        return _local_triplet_loss(image_all, text_all, image_ids_all, margin, hardest, rows)
    scores = image_all @ text_all.t()
    positive = scores.diagonal().view(-1, 1)
    same_image = torch.eq(image_ids_all.view(-1, 1), image_ids_all.view(1, -1))
    cost_caption = (margin + scores - positive).clamp(min=0).masked_fill(same_image, 0)
    cost_image = (margin + scores - positive.t()).clamp(min=0).masked_fill(same_image, 0)
    if hardest:
        return cost_caption.max(dim=1).values.sum() + cost_image.max(dim=0).values.sum()
    return cost_caption.sum() + cost_image.sum()


def _local_triplet_loss(image_all: torch.Tensor, text_all: torch.Tensor, image_ids_all: torch.Tensor,
                        margin: float, hardest: bool, rows: slice) -> torch.Tensor:
    """triplet_loss with the anchors ``rows``: each image against every caption and each caption
    against every image, [R, N] each; a sum, so scaled by N/R to average to the whole batch's."""
    image_scores = image_all[rows] @ text_all.t()            # [anchor image, caption]
    text_scores = text_all[rows] @ image_all.t()             # [anchor caption, image]
    same_image = torch.eq(image_ids_all[rows].view(-1, 1), image_ids_all.view(1, -1))
    cost_caption = (margin + image_scores - image_scores.diagonal(rows.start).view(-1, 1)).clamp(min=0)
    cost_image = (margin + text_scores - text_scores.diagonal(rows.start).view(-1, 1)).clamp(min=0)
    cost_caption, cost_image = cost_caption.masked_fill(same_image, 0), cost_image.masked_fill(same_image, 0)
    scale = image_all.shape[0] / image_scores.shape[0]
    if hardest:
        return (cost_caption.max(dim=1).values.sum() + cost_image.max(dim=1).values.sum()) * scale
    return (cost_caption.sum() + cost_image.sum()) * scale
