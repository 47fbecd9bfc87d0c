"""The PIR architecture (``ModelConfig``); its named defaults are the presets (pir.config.presets)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from pir.config.values import check, check_choice

# model.clip_activation: "auto" reads it off the weights' name (pir.clip_known; docs/clip-family.md, "CLIP towers").
CLIP_ACTIVATIONS = ("auto", "quickgelu", "gelu")
# CLIP's normalisation constants: every preset normalises with them unless model.image_mean/std say otherwise.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class ModelConfig:
    """PIR architecture. The presets below (``PRESETS``) hold its named defaults.

    With ``clip_model`` set (the ``clip-*`` presets) the towers are open_clip's (pir.models.clip)
    and the Swin/BERT fields are unused; the PIR heads, prior and losses are the same.
    """
    # vision backbone: timm Swin, built by name with these geometry overrides
    vision_model: str = "swin_tiny_patch4_window7_224"
    vision_pretrained: str = ""     # "" random init, "timm" hub weights, a timm tag (swin_tiny_patch4_window7_224
                                    # .ms_in22k), a local file (original Microsoft Swin layout accepted), or a
                                    # Hub id hf-hub:ORG/REPO[/FILE][@REVISION] of one (pir.hub)
    image_size: int = 224
    image_mean: tuple[float, float, float] = CLIP_MEAN  # per-channel normalisation of every input image
    image_std: tuple[float, float, float] = CLIP_STD    # (the released configs and CLIP checkpoints use CLIP's)
    swin_patch_size: int = 4
    swin_window_size: int = 7
    swin_embed_dim: int = 96
    swin_depths: tuple[int, ...] = (2, 2, 6, 2)
    swin_heads: tuple[int, ...] = (3, 6, 12, 24)
    swin_drop_path: float = 0.1
    # text backbone: BERT from transformers; "bert-base-uncased" name or local dir when pretrained
    text_model: str = "bert-base-uncased"
    text_pretrained: bool = False   # load text_model weights (name, dir or Hub id: pir.hub) with from_pretrained
    text_width: int = 768
    text_layers: int = 12
    text_heads: int = 12
    text_ffn: int = 3072
    vocab_size: int = 30522         # set from the tokenizer by the stage
    max_tokens: int = 47            # captions cut to this many tokens, [CLS]/[SEP] included (set from data)
    max_words: int = 30             # and first to this many words (set from data.max_words by the stage)
    text_mask: bool = True          # False reproduces the official code: no attention mask anywhere on text
    fold_text: bool = True          # with text_mask, BERT runs on real tokens only, two captions a row (CPU; same outputs)
    # CLIP towers (pir.models.clip): an open_clip architecture name replaces Swin + BERT
    clip_model: str = ""            # "" = PIR's Swin + BERT; else open_clip name (ViT-B-32, ViT-B-16, ViT-L-14,
                                    # ViT-H-14, RN50, PIR-CLIP-tiny)
    clip_weights: str = ""          # starting weights: "" random init, or a local file / HF-style folder (any layout
                                    # pir.models.clip.load_clip_checkpoint reads: RemoteCLIP, GeoRSCLIP, OpenAI, ...),
                                    # or a Hub id of one: hf-hub:ORG/REPO[/FILE][@REVISION] (pir.hub)
    clip_activation: str = "auto"   # auto | quickgelu | gelu. auto: from the names of clip_weights and clip_model
                                    # (pir.clip_known: OpenAI-initialised RemoteCLIP/GeoRSCLIP-B32 QuickGELU, else GELU);
                                    # the pipeline records the resolved value
    # May clip_weights / evaluate.checkpoint be a TorchScript archive (OpenAI's .pt)? Loading one runs
    # code from the file, so only on request. A permission, not architecture: to_dict leaves it out of
    # checkpoints and run keys (docs/clip-family.md, "CLIP towers").
    allow_torchscript: bool = dataclasses.field(default=False, metadata={"permission": True})
    # scene prior ("instruction encoder"): timm classifier, pooled features, frozen unless finetune_prior
    prior_model: str = "resnet50"
    prior_channels: tuple[int, ...] = ()  # timm ResNet stage widths; () = the model's own
    prior_width: int = 2048         # pooled feature width of prior_model
    finetune_prior: bool = False
    # PIR head
    embed_dim: int = 512
    heads: int = 8
    dropout: float = 0.2
    filter_size: int = 40           # tokens kept after belief sorting (of 1 + final Swin tokens)
    instru_num: int = 2             # Spatial-PAE repetitions (VIR)
    cycle_num: int = 3              # Temporal-PAE repetitions (LCA)
    use_vir: bool = True            # False: image = vision_proj(global token), no scene prior
    use_lca: bool = True            # False: text = text_proj([CLS])
    # losses
    temp: float = 0.07              # contrastive temperature tau1 (learnable)
    temp2: float = 0.07             # affiliation temperature tau2 (learnable)
    use_affiliation: bool = True
    center_factor: float = 1.0
    use_triplet: bool = False       # add VSE triplet loss
    triplet_margin: float = 0.2
    triplet_hardest: bool = False

    def __post_init__(self) -> None:
        for key in ("image_size", "swin_patch_size", "swin_window_size", "swin_embed_dim", "text_width",
                    "text_layers", "text_heads", "text_ffn", "vocab_size", "max_words", "prior_width",
                    "embed_dim", "heads", "filter_size", "instru_num", "cycle_num"):
            check(getattr(self, key) >= 1, key, getattr(self, key), "must be >= 1")
        check(self.max_tokens >= 3, "max_tokens", self.max_tokens, "must be >= 3 ([CLS], a word, [SEP])")
        check(len(self.swin_depths) == len(self.swin_heads) and len(self.swin_depths) >= 1, "swin_depths",
              list(self.swin_depths), f"one depth per stage, as many as swin_heads {list(self.swin_heads)}")
        check(self.embed_dim % self.heads == 0, "embed_dim", self.embed_dim, f"must be a multiple of heads={self.heads}")
        check(0 <= self.dropout < 1, "dropout", self.dropout, "must be in [0, 1)")
        check(0 <= self.swin_drop_path < 1, "swin_drop_path", self.swin_drop_path, "must be in [0, 1)")
        check(self.temp > 0, "temp", self.temp, "must be > 0")
        check(self.temp2 > 0, "temp2", self.temp2, "must be > 0")
        check(self.center_factor >= 0, "center_factor", self.center_factor, "must be >= 0")
        check(self.triplet_margin >= 0, "triplet_margin", self.triplet_margin, "must be >= 0")
        check(all(v > 0 for v in self.image_std), "image_std", list(self.image_std), "three values > 0")
        check_choice("clip_activation", self.clip_activation, CLIP_ACTIVATIONS)
        check(not self.clip_weights or bool(self.clip_model), "clip_weights", self.clip_weights,
              "needs model.clip_model (use a clip-* preset)")

    @property
    def is_clip(self) -> bool:
        """open_clip towers (a clip-* preset) rather than Swin + BERT."""
        return bool(self.clip_model)
