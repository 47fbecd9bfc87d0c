"""PIR's heads, shared by every pair of towers (docs/design.md, "The model" and "CLIP towers").

``PIRHeads`` holds what PIR adds on top of its two encoders, whatever they are:
the frozen scene prior and VIR (belief filter + Spatial-PAE over image tokens instructed
by the prior), LCA (Temporal-PAE over text token states), the learnable temperatures and
the losses. A subclass supplies the towers: ``image_tokens(images)`` ([B, 1 + N, D], the
global token first) and ``text_tokens(input_ids, mask)`` ([B, L, D], the [CLS]-role token
first), and ``encode_image`` / ``encode_text`` built from them.

``pir.models.pir.PIR`` (Swin + BERT, the paper) and ``pir.models.clip.ClipPIR`` (open_clip
towers) both inherit it, so there is one implementation of VIR, LCA and the losses. Module
names mirror the official state_dict (``conv_proj``, ``mapping_img``, ``mapping_txt``,
``head_img``, ``head_txt``, ``img_sa``/``img_ca``/``txt_sa``/``txt_ca``, ``temp``, ``temp2``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pir.config import ModelConfig
from pir.models import backbones, collectives, losses
from pir.models.blocks import CrossAttentionBlock, SelfAttentionBlock, belief_filter


def _repeat(make, count: int) -> nn.ModuleList:
    return nn.ModuleList(make() for _ in range(count))


class PIRHeads(nn.Module):
    """VIR, LCA, the scene prior and the losses over a subclass's image and text tokens."""

    cfg: ModelConfig

    def build_heads(self, cfg: ModelConfig, dim: int) -> None:
        """Create the heads ``cfg`` switches on, in width ``dim`` (call after the towers exist)."""
        block = lambda kind: (lambda: kind(dim, cfg.heads, cfg.dropout))  # noqa: E731
        if cfg.use_vir:
            self.scene_prior = backbones.create_scene_prior(cfg, num_classes=0)
            self.scene_prior.to(memory_format=torch.channels_last)
            self.conv_proj = nn.Linear(cfg.prior_width, dim)
            self.mapping_img = _repeat(lambda: nn.Linear(dim, dim), cfg.instru_num)
            self.img_sa = _repeat(block(SelfAttentionBlock), cfg.instru_num)
            self.img_ca = _repeat(block(CrossAttentionBlock), cfg.instru_num)
            self.head_img = nn.Linear(dim, dim)
            self._freeze_prior()
        if cfg.use_lca:
            self.mapping_txt = _repeat(lambda: nn.Linear(dim, dim), cfg.cycle_num)
            self.txt_sa = _repeat(block(SelfAttentionBlock), cfg.cycle_num)
            self.txt_ca = _repeat(block(CrossAttentionBlock), cfg.cycle_num)
            self.head_txt = nn.Linear(dim, dim)

    # ------------------------------------------------------------------ scene prior
    @property
    def prior_frozen(self) -> bool:
        return self.cfg.use_vir and not self.cfg.finetune_prior

    def _freeze_prior(self) -> None:
        if self.prior_frozen:
            self.scene_prior.requires_grad_(False)
            self.scene_prior.eval()

    def train(self, mode: bool = True) -> "PIRHeads":
        """Like nn.Module.train, but a frozen prior stays in eval mode (BatchNorm stats untouched)."""
        super().train(mode)
        if self.prior_frozen:
            self.scene_prior.eval()
        return self

    def instruction(self, images: torch.Tensor) -> torch.Tensor:
        """[B, D]: the scene prior's pooled feature projected by conv_proj (the instruction c)."""
        images = images.contiguous(memory_format=torch.channels_last)
        if not self.prior_frozen:
            return self.conv_proj(self.scene_prior(images))
        with torch.inference_mode():  # no autograd bookkeeping at all for the frozen ResNet
            pooled = self.scene_prior(images)
        # an inference tensor cannot be saved for backward; conv_proj saves its input for the
        # weight gradient, so hand it a normal copy ([B, 2048]: negligible)
        return self.conv_proj(pooled.clone())

    # ------------------------------------------------------------------ VIR / LCA
    def vir(self, tokens: torch.Tensor, instruction: torch.Tensor) -> torch.Tensor:
        """Vision Instruction Representation on projected tokens [B, 1+N, D] -> embedding [B, D]."""
        kept, _ = belief_filter(tokens, instruction, self.cfg.filter_size)
        last = len(self.img_ca) - 1
        for i, (sa, ca, mapping) in enumerate(zip(self.img_sa, self.img_ca, self.mapping_img)):
            attended = sa(kept)
            # every kept token is queried by the same mapped instruction (official broadcast);
            # only row 0 of the last block is read, so only row 0 is computed there
            kept = ca(mapping(instruction).unsqueeze(1).expand_as(attended), attended, first_only=i == last)
        return F.normalize(tokens[:, 0] + self.head_img(kept[:, 0]), dim=-1)

    def lca(self, tokens: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        """Language Cycle Attention on projected tokens [B, L, D] -> embedding [B, D]."""
        cycled = tokens
        last = len(self.txt_ca) - 1
        for i, (sa, ca, mapping) in enumerate(zip(self.txt_sa, self.txt_ca, self.mapping_txt)):
            attended = sa(cycled, key_mask)
            # only row 0 ([CLS]) of the last cycle is read: map and cross-attend just that row
            query = cycled[:, :1] if i == last else cycled
            cycled = ca(mapping(query), attended, key_mask, first_only=i == last)
        return F.normalize(tokens[:, 0] + self.head_txt(cycled[:, 0]), dim=-1)

    def embed_image_tokens(self, tokens: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        """Image embedding from tokens [B, 1+N, D]: the global token, or VIR when ``use_vir``."""
        if not self.cfg.use_vir:
            return F.normalize(tokens[:, 0], dim=-1)
        return self.vir(tokens, self.instruction(images))

    def embed_text_tokens(self, tokens: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        """Text embedding from tokens [B, L, D]: the first token, or LCA when ``use_lca``."""
        if not self.cfg.use_lca:
            return F.normalize(tokens[:, 0], dim=-1)
        return self.lca(tokens, key_mask)

    # ------------------------------------------------------------------ training
    def temperatures(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(tau1, tau2): the contrastive and affiliation temperatures (learnable parameters)."""
        return self.temp, getattr(self, "temp2", None)

    def loss(self, image_emb: torch.Tensor, text_emb: torch.Tensor, image_ids: torch.Tensor,
             scene_labels: torch.Tensor | None, rank: int = 0, world_size: int = 1,
             local_loss: bool = False) -> dict[str, torch.Tensor]:
        """Loss terms on local embeddings, gathered over ``world_size`` ranks.

        ``local_loss`` (train.local_loss): score only this rank's rows against the gathered batch;
        the terms are then this rank's share, and their mean over the ranks is the global value.
        """
        labels = scene_labels if scene_labels is not None else torch.full_like(image_ids, -1)
        rows = losses.local_rows(rank, image_ids.shape[0]) if local_loss and world_size > 1 else None
        # losses in float32 even under bf16 autocast: logits are divided by a 0.07 temperature
        with torch.autocast(image_emb.device.type, enabled=False):
            return self._loss_fp32(image_emb.float(), text_emb.float(), image_ids, labels, rank, world_size, rows)

    def _loss_fp32(self, image_emb, text_emb, image_ids, labels, rank, world_size,
                   rows: slice | None) -> dict[str, torch.Tensor]:
        images, texts, ids, labels = losses.gather_batch(image_emb, text_emb, image_ids, labels,
                                                         rank=rank, world_size=world_size)
        temp, temp2 = self.temperatures()
        out = {"loss_contrastive": losses.contrastive_loss(images, texts, ids, temp.float(), rows)}
        total = out["loss_contrastive"]
        if self.cfg.use_affiliation:
            out["loss_affiliation"] = losses.affiliation_loss(images, texts, labels, temp2.float(), rows)
            total = total + self.cfg.center_factor * out["loss_affiliation"]
        if self.cfg.use_triplet:
            out["loss_triplet"] = losses.triplet_loss(images, texts, ids, self.cfg.triplet_margin,
                                                      self.cfg.triplet_hardest, rows)
            total = total + out["loss_triplet"]
        return {"loss": total, **out}

    def forward(self, images: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor | None,
                image_ids: torch.Tensor, scene_labels: torch.Tensor | None = None,
                local_loss: bool = False) -> dict[str, torch.Tensor]:
        """Embeds both sides and returns dict(loss, loss_contrastive, loss_affiliation?, loss_triplet?).

        Gathers across ranks itself when torch.distributed is initialised (``local_loss``: see loss).
        """
        image_emb = self.encode_image(images)
        text_emb = self.encode_text(input_ids, attention_mask)
        return self.loss(image_emb, text_emb, image_ids, scene_labels,
                         rank=collectives.rank(), world_size=collectives.world_size(), local_loss=local_loss)
