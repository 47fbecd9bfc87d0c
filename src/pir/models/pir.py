"""The PIR model (docs/design.md, "The model"): VIR on the image side, LCA on the text side, two losses.

Module names mirror the official state_dict (``vision_encoder``, ``text_encoder``,
``vision_proj``, ``text_proj``, ``conv_proj``, ``mapping_img``, ``mapping_txt``,
``head_img``, ``head_txt``, ``img_sa``/``img_ca``/``txt_sa``/``txt_ca``, ``temp``,
``temp2``) so that importing the authors' checkpoints is mostly a backbone
renaming (``pir.models.official``). The official ``conv_encoder`` is our
``scene_prior`` (a timm classifier instead of ResNet children by index). VIR, LCA and the
losses live in ``pir.models.heads``, shared with the CLIP towers (``pir.models.clip``).
"""

from __future__ import annotations

import torch
from torch import nn

from pir.config import ModelConfig
from pir.models import backbones, folding
from pir.models.heads import PIRHeads


class PIR(PIRHeads):
    """PIR, or the Swin-T + BERT baseline when ``use_vir`` and ``use_lca`` are off.

    VIR, LCA, the scene prior and the losses are ``pir.models.heads.PIRHeads``; this class
    holds the Swin and BERT towers and their projections.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        dim = cfg.embed_dim
        self.vision_encoder = backbones.create_vision_encoder(cfg)
        self.text_encoder = backbones.create_text_encoder(cfg)
        self.vision_proj = nn.Linear(self.vision_encoder.num_features, dim)
        self.text_proj = nn.Linear(self.text_encoder.config.hidden_size, dim)
        self.temp = nn.Parameter(torch.tensor(float(cfg.temp)))
        if cfg.use_affiliation:  # as in the official code, temp2 exists only with the affiliation loss
            self.temp2 = nn.Parameter(torch.tensor(float(cfg.temp2)))
        self.build_heads(cfg, dim)

    # ------------------------------------------------------------------ image side
    def image_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 1 + N, D]: projected [global average ; Swin tokens]."""
        return self.vision_proj(backbones.swin_tokens(self.vision_encoder, images))

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, 3, S, S] (CLIP-normalised) -> L2-normalised [B, D]."""
        return self.embed_image_tokens(self.image_tokens(images), images)

    # ------------------------------------------------------------------ text side
    def text_tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        """[B, L, D]: projected BERT last hidden states ([CLS] first).

        Folded (``fold_text``, a masked CPU batch: pir.models.folding), BERT never sees the
        padding and padded positions hold text_proj(0); either way they are masked out of LCA.
        """
        if self.cfg.fold_text and folding.can_fold(self.text_encoder, attention_mask):
            hidden = folding.folded_bert_states(self.text_encoder, input_ids, attention_mask)
        else:
            hidden = self.text_encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.text_proj(hidden)

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """input_ids, attention_mask [B, L] -> L2-normalised [B, D].

        With ``text_mask`` off the mask is ignored everywhere (official behaviour:
        padding tokens are attended to by BERT and by the PAE blocks).
        """
        mask = attention_mask if self.cfg.text_mask else None
        tokens = self.text_tokens(input_ids, mask)
        return self.embed_text_tokens(tokens, None if mask is None else mask.bool())
