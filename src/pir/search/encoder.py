"""A checkpoint as an encoder for search: images and free text in, L2-normalised vectors out.

Built from the pipeline's own pieces, so an index embeds exactly as the evaluate stage does:
pir.models.checkpoint.load_model (our best.pt with its config, the authors' format, an exported
folder, or a Hub id of one: pir.hub), the tokenizer code of pir.data.text, the eval transform and CLIP
normalisation of pir.data.transforms.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pir import hub
from pir.config import PRESETS, ModelConfig, model_config
from pir.data.transforms import eval_transform
from pir.evaluation.embed import encode_captions, encode_images
from pir.models.checkpoint import load_evaluated_model, load_model
from pir.models.exported import is_export_folder


def search_tokenizer(cfg: ModelConfig, folder: str | os.PathLike | None, checkpoint: Path) -> Any:
    """The tokenizer a checkpoint's text encoder was trained with: the one place search builds one.

    A CLIP-tower model uses open_clip's BPE (:func:`pir.data.text.model_tokenizer`). Otherwise ``folder``
    (a saved HF tokenizer folder) wins; without one, an exported folder (``pir export --hub``) uses its
    own, a checkpoint under ``<project>/data/train`` the fetch stage's ``<project>/data/fetch/tokenizer``,
    and a pretrained text model its own name.
    """
    from pir.data.text import check_vocabulary, model_tokenizer

    if folder is None and not cfg.is_clip:
        beside = checkpoint.resolve().parent.parent / "fetch" / "tokenizer"
        if is_export_folder(checkpoint):
            folder = checkpoint
        elif beside.is_dir():
            folder = beside
        elif cfg.text_pretrained and cfg.text_model:
            folder = cfg.text_model
        else:
            raise ValueError(f"{checkpoint}: no tokenizer found beside the checkpoint (looked in {beside}); "
                             "pass --tokenizer with the tokenizer folder the model was trained with")
    tokenizer = model_tokenizer(cfg, folder)
    check_vocabulary(tokenizer, cfg.vocab_size, checkpoint)
    return tokenizer


def checkpoint_preset(cfg: ModelConfig, extra: dict[str, Any]) -> str:
    """The model preset a checkpoint was trained with: from its params, else by architecture ("custom")."""
    named = ((extra.get("params") or {}).get("model") or {}).get("preset")
    if named:
        return str(named)
    fields = ("image_size", "swin_embed_dim", "text_width", "embed_dim", "clip_model")
    return next((name for name, preset in PRESETS.items()
                 if all(getattr(preset, f) == getattr(cfg, f) for f in fields)), "custom")


@contextlib.contextmanager
def one_thread():
    """Run one query on one intra-op thread. A query is a few tiny matrix products: split over threads,
    OpenMP's barriers cost more than the work, and when the cores are busy (a stage running beside the
    server) the threads spin-wait for each other: a tiny-preset text query took ~950 ms on 2 threads of
    this 2-core machine under load and ~14 ms on one (measured)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@dataclass
class Encoder:
    model: nn.Module
    cfg: ModelConfig
    tokenizer: Any
    device: torch.device
    extra: dict[str, Any]     # the checkpoint's other entries (epoch, params, model_key, ...)
    source: Path | None = None    # the file or folder the weights were read from (a Hub id's place in the cache)
    hub: dict[str, str] = field(default_factory=dict)   # {Hub id: commit} when the checkpoint was named by one

    @property
    def preset(self) -> str:
        """The model preset the checkpoint was trained with (:func:`checkpoint_preset`)."""
        return checkpoint_preset(self.cfg, self.extra)

    @property
    def dim(self) -> int:
        return self.cfg.embed_dim

    def preprocess(self, rgb: np.ndarray) -> np.ndarray:
        """uint8 [H, W, 3] at any size -> uint8 [3, S, S]: the evaluate stage's test-time resize. numpy in
        and out, as pir.search.onnx_encoder.OnnxEncoder's, so callers stack batches without torch."""
        pixels = torch.from_numpy(np.require(rgb, np.uint8, "W"))   # PIL arrays are read-only
        return eval_transform(self.cfg.image_size)(pixels.permute(2, 0, 1).contiguous()).numpy()

    @torch.inference_mode()
    def encode_images(self, batch: np.ndarray | torch.Tensor) -> np.ndarray:
        """uint8 [B, 3, S, S] (stacked :meth:`preprocess` outputs) -> float32 [B, D], unit rows."""
        return encode_images(self.model, torch.as_tensor(batch), self.device).numpy()

    @torch.inference_mode()
    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """Free-text queries -> float32 [B, D], unit rows (tokenized like training captions: pir.data.text.tokenize)."""
        return encode_captions(self.model, self.tokenizer, list(texts), self.cfg.max_tokens, self.cfg.max_words,
                               self.device).numpy()

    def query_text(self, text: str) -> np.ndarray:
        """One text query -> float32 [D] (one thread, see :func:`one_thread`)."""
        with one_thread():
            return self.encode_texts([text])[0]

    def query_image(self, rgb: np.ndarray) -> np.ndarray:
        """One image (uint8 [H, W, 3], any size) -> float32 [D] (one thread, see :func:`one_thread`)."""
        with one_thread():
            return self.encode_images(self.preprocess(rgb)[None])[0]


def load_encoder(checkpoint: str | os.PathLike, tokenizer: str | os.PathLike | None = None,
                 device: str | torch.device = "cpu", preset: str = "") -> Encoder:
    """An :class:`Encoder` from any checkpoint ``load_model`` reads; see :func:`search_tokenizer` for ``tokenizer``.

    With a clip-* ``preset``, released CLIP weights (any layout ``load_evaluated_model`` reads) load too, as
    that preset's plain CLIP model; our own checkpoints load as themselves whatever the preset. A Hub id
    (pir.hub) is resolved once, here: the encoder keeps where it lies and the commit."""
    with hub.recording() as resolved:
        checkpoint = hub.local_path(checkpoint, "checkpoint")
    device = torch.device(device)
    if preset:
        model, cfg, extra = load_evaluated_model(checkpoint, device, model_config(preset))
    else:
        model, cfg, extra = load_model(checkpoint, device)
    return Encoder(model, cfg, search_tokenizer(cfg, tokenizer, checkpoint), device, extra, source=checkpoint,
                   hub=hub.report(resolved))
