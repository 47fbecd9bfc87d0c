"""CLIP towers (open_clip) under the PIR heads: CLIP-CL fine-tuning, PIR on CLIP, zero-shot.

``ClipPIR`` wraps an open_clip ``CLIP`` model built by architecture name (``ViT-B-32``,
``ViT-B-16``, ``ViT-L-14``, ``ViT-H-14``, ``RN50`` or this project's ``PIR-CLIP-tiny``, see
``clip_configs/``) with the activation ``model.clip_activation`` names (``auto``: what
``pir.clip_known`` reads off the weights' name), and reuses ``pir.models.heads.PIRHeads`` for VIR,
LCA, the scene prior and the losses. What maps to what (docs/clip-family.md, "CLIP towers"):

- image tokens = [CLIP image embedding ; patch tokens after ``ln_post``, through the same
  ``visual.proj``]: CLIP's own projection plays ``vision_proj``, its pooled [CLS] the global token;
- text tokens = [CLIP text embedding (the end-of-text token) ; every token state after
  ``ln_final``, through ``text_projection``]: the EOT token plays BERT's [CLS];
- a ResNet image tower (``RN50``: open_clip's ModifiedResNet, attention-pooled) has no patch tokens:
  ``use_vir`` is refused for it in one line; its text tower takes LCA as the ViTs' do;
- with ``use_vir`` and ``use_lca`` off the embeddings are exactly open_clip's
  ``encode_image`` / ``encode_text`` (normalised): the CLIP-CL baseline and zero-shot;
- the contrastive temperature is CLIP's learnable ``logit_scale`` (tau = exp(-logit_scale),
  capped at scale 100 as open_clip clamps it); the affiliation loss has its own ``temp2``.

``load_clip_checkpoint`` reads released weights in every layout people publish (plain
open_clip state dicts, open_clip training checkpoints, OpenAI's TorchScript archives,
Hugging Face-style folders); every format but OpenAI's TorchScript archive loads with
``weights_only=True``, and a TorchScript archive, whose loading runs code from the file, is refused
unless the caller opts in (``model.allow_torchscript``, ``allow_torchscript=True``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping

import open_clip
import torch
import torch.nn.functional as F
from torch import nn

from pir import hub
from pir.clip_known import ACTIVATIONS, resolve_activation
from pir.config import PRESETS, ModelConfig
from pir.errors import first_line
from pir.files import is_torchscript, load_torch, torchscript_refused
from pir.models.heads import PIRHeads

CONFIG_DIR = Path(__file__).resolve().parent / "clip_configs"
open_clip.add_model_config(CONFIG_DIR)   # PIR-CLIP-tiny becomes an open_clip architecture name

MAX_LOGIT_SCALE = math.log(100)          # open_clip clamps logit_scale to [0, ln 100] after every step
# Entries of OpenAI's archives that are attributes, not weights (open_clip's own loader drops them too).
OPENAI_EXTRA_KEYS = ("input_resolution", "context_length", "vocab_size")
HF_CONFIG = "open_clip_config.json"
HF_WEIGHTS = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin", "model.safetensors", "pytorch_model.bin")


def create_clip(arch: str, activation: str = "gelu") -> nn.Module:
    """A randomly initialised open_clip model of architecture ``arch`` computing with ``activation``
    (quickgelu | gelu); weights come from a file, never a hub."""
    if arch not in open_clip.list_models():
        raise ValueError(f"model.clip_model = {arch!r}: not an open_clip architecture "
                         f"(e.g. ViT-B-32, ViT-B-16, ViT-L-14, ViT-H-14, RN50, PIR-CLIP-tiny)")
    if activation not in ACTIVATIONS:
        raise ValueError(f"model.clip_activation = {activation!r}: choose from {', '.join(ACTIVATIONS)}")
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)     # open_clip warns "no pretrained weights": they come from clip_weights
    try:
        # quick_gelu as a model kwarg overrides the architecture's config both ways (force_quick_gelu only sets it)
        model = open_clip.create_model(arch, pretrained=None, quick_gelu=activation == "quickgelu")
    finally:
        logging.disable(previous)
    if not isinstance(model, open_clip.CLIP):
        raise ValueError(f"model.clip_model = {arch!r}: only open_clip CLIP models (built-in text tower) are supported")
    return model


def clip_embed_dim(model: nn.Module) -> int:
    return int(model.visual.output_dim)


def clip_image_size(model: nn.Module, default: int) -> tuple[int, int]:
    """The (height, width) the image tower reads: a ViT keeps a pair, open_clip's ModifiedResNet an int."""
    size = getattr(model.visual, "image_size", default)
    return (size, size) if isinstance(size, int) else tuple(size)


class ClipPIR(PIRHeads):
    """An open_clip model with the PIR heads ``cfg`` switches on (none: plain CLIP)."""

    def __init__(self, cfg: ModelConfig, log: Callable[[str], None] = print):
        super().__init__()
        if not cfg.is_clip:
            raise ValueError("ClipPIR needs model.clip_model (a clip-* preset)")
        activation, why = cfg.clip_activation, ""
        if activation == "auto":   # built directly (library use): the pipeline hands over a resolved config
            activation, why = resolve_activation(cfg.clip_model, cfg.clip_weights)
            cfg = dataclasses.replace(cfg, clip_activation=activation)
        self.cfg = cfg
        self.clip = create_clip(cfg.clip_model, activation)
        if cfg.use_vir and not isinstance(self.clip.visual, open_clip.transformer.VisionTransformer):
            raise ValueError(f"model.use_vir needs image patch tokens, and {cfg.clip_model}'s image tower is a "
                             f"{type(self.clip.visual).__name__}; set model.use_vir=false (CLIP-CL, zero-shot)")
        dim = clip_embed_dim(self.clip)
        if cfg.embed_dim != dim:
            raise ValueError(f"model.embed_dim = {cfg.embed_dim} but {cfg.clip_model} embeds in {dim} dimensions; "
                             f"set model.embed_dim={dim}")
        if cfg.vocab_size != self.clip.vocab_size:
            raise ValueError(f"model.vocab_size = {cfg.vocab_size} but {cfg.clip_model} has {self.clip.vocab_size} "
                             "token ids (CLIP presets use open_clip's BPE tokenizer)")
        arch_size = clip_image_size(self.clip, cfg.image_size)
        if arch_size != (cfg.image_size, cfg.image_size):
            raise ValueError(f"model.image_size = {cfg.image_size} but {cfg.clip_model} reads {arch_size[0]} px images; "
                             f"set model.image_size={arch_size[0]}")
        if cfg.max_tokens > self.clip.context_length:
            raise ValueError(f"data.max_tokens = {cfg.max_tokens} exceeds {cfg.clip_model}'s context of "
                             f"{self.clip.context_length} tokens")
        if cfg.clip_weights:
            state, layout = read_clip_state(cfg.clip_weights, allow_torchscript=cfg.allow_torchscript)
            loaded = load_clip_state(self.clip, state, cfg.clip_weights, cfg.clip_model)
            said = f"{activation}: {why}" if why else activation
            log(f"clip: loaded {cfg.clip_model} ({said}) from {cfg.clip_weights} ({layout}, {loaded} tensors)")
        if cfg.use_affiliation:
            self.temp2 = nn.Parameter(torch.tensor(float(cfg.temp2)))
        self.build_heads(cfg, dim)
        if cfg.use_vir:
            # Start PIR on CLIP at CLIP's own embedding: the VIR/LCA residuals begin at zero, so
            # pretrained weights are not scrambled by random heads on the first steps.
            nn.init.zeros_(self.head_img.weight)
            nn.init.zeros_(self.head_img.bias)
        if cfg.use_lca:
            nn.init.zeros_(self.head_txt.weight)
            nn.init.zeros_(self.head_txt.bias)

    def temperatures(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        return torch.exp(-self.clip.logit_scale.clamp(0, MAX_LOGIT_SCALE)), getattr(self, "temp2", None)

    # ------------------------------------------------------------------ image side
    def image_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """[B, 1 + N, D]: [CLIP image embedding ; projected patch tokens]."""
        visual = self.clip.visual
        visual.output_tokens = True   # open_clip's switch: (pooled, tokens after ln_post) from one pass
        try:
            pooled, patches = visual(images)
        finally:
            visual.output_tokens = False
        if visual.proj is not None:
            patches = patches @ visual.proj
        return torch.cat([pooled.unsqueeze(1), patches], dim=1)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, 3, S, S] normalised with the checkpoint's mean/std -> L2-normalised [B, D]."""
        if not self.cfg.use_vir:
            return F.normalize(self.clip.visual(images), dim=-1)
        return self.embed_image_tokens(self.image_tokens(images), images)

    # ------------------------------------------------------------------ text side
    def _text_states(self, input_ids: torch.Tensor) -> torch.Tensor:
        """[B, L, W]: token states after ``ln_final`` (open_clip's encode_text up to pooling).

        The text tower is causal, so a batch padded to its longest caption gives each real token
        (and the EOT token) exactly what open_clip's 77-token padding gives.
        """
        clip = self.clip
        length = input_ids.shape[1]
        if length > clip.context_length:
            raise ValueError(f"captions of {length} tokens exceed the CLIP context of {clip.context_length}")
        cast_dtype = clip.transformer.get_cast_dtype()
        x = clip.token_embedding(input_ids).to(cast_dtype) + clip.positional_embedding[:length].to(cast_dtype)
        x = clip.transformer(x, attn_mask=clip.attn_mask[:length, :length])
        return clip.ln_final(x)

    def _project_text(self, x: torch.Tensor) -> torch.Tensor:
        projection = self.clip.text_projection
        if projection is None:
            return x
        return projection(x) if isinstance(projection, nn.Linear) else x @ projection

    def text_tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """[B, 1 + L, D]: [CLIP text embedding (EOT token) ; every projected token state]."""
        states = self._text_states(input_ids)
        pooled = open_clip.transformer.text_global_pool(states, input_ids, self.clip.text_pool_type,
                                                        eos_token_id=getattr(self.clip, "text_eos_id", None))
        return self._project_text(torch.cat([pooled.unsqueeze(1), states], dim=1))

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """open_clip token ids [B, L] (and their mask) -> L2-normalised [B, D]."""
        if not self.cfg.use_lca:
            states = self._text_states(input_ids)
            pooled = open_clip.transformer.text_global_pool(states, input_ids, self.clip.text_pool_type,
                                                            eos_token_id=getattr(self.clip, "text_eos_id", None))
            return F.normalize(self._project_text(pooled), dim=-1)
        tokens = self.text_tokens(input_ids)
        key_mask = None
        if self.cfg.text_mask and attention_mask is not None:
            key_mask = torch.cat([torch.ones_like(attention_mask[:, :1]), attention_mask], dim=1).bool()
        return self.embed_text_tokens(tokens, key_mask)


# --------------------------------------------------------------------------- loading released weights

def _strip_prefix(state: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items()}
    return dict(state)


def _load_safetensors(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file
    try:
        return load_file(str(path))
    except Exception as exc:
        raise ValueError(f"{path}: not a loadable safetensors file ({first_line(exc)})") from None


def _read_folder(folder: Path, allow_torchscript: bool) -> tuple[dict[str, Any], str]:
    """A Hugging Face-style folder: open_clip_config.json + open_clip_model.safetensors or *_model.bin."""
    if not (folder / HF_CONFIG).is_file():
        raise ValueError(f"{folder}: a weights folder needs {HF_CONFIG} and one of {', '.join(HF_WEIGHTS)}")
    try:
        json.loads((folder / HF_CONFIG).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{folder / HF_CONFIG}: unreadable ({first_line(exc)})") from None
    for name in HF_WEIGHTS:
        if (folder / name).is_file():
            state, _ = read_clip_state(folder / name, allow_torchscript=allow_torchscript)
            return state, f"hf folder ({name})"
    raise ValueError(f"{folder}: no weights file (looked for {', '.join(HF_WEIGHTS)})")


def read_clip_state(path: str | os.PathLike, allow_torchscript: bool = False, what: str = "model.clip_weights"
                    ) -> tuple[dict[str, torch.Tensor], str]:
    """(open_clip state dict, layout name) from a file or folder in any accepted layout, or a Hugging
    Face Hub id of one (``hf-hub:ORG/REPO[/FILE][@REVISION]``, pir.hub; ``what`` names the setting).

    Layouts: a plain state dict (RemoteCLIP, GeoRSCLIP); an open_clip training checkpoint
    (``{"state_dict": ..., "epoch": ...}``, ``module.`` prefix); a ``.safetensors`` file; a Hugging
    Face-style folder; OpenAI's TorchScript archive. All but the last load with ``weights_only=True``:
    a TorchScript archive is code as well as weights and can only be read with ``torch.jit.load``,
    which runs that code. It is recognised from the zip's directory alone and refused in one line
    unless ``allow_torchscript`` (``model.allow_torchscript``): load OpenAI archives only from OpenAI's
    own download (docs/clip-family.md, "CLIP towers"). A Hub id resolves to a file or snapshot folder of the
    cache, read by the same rules: the TorchScript refusal included.
    """
    # A repository without FILE is the folder layout: only its config and weights files are fetched.
    path = hub.local_path(path, what, folder_files=(HF_CONFIG, *HF_WEIGHTS))
    if path.is_dir():
        return _read_folder(path, allow_torchscript)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: CLIP weights not found")
    if path.suffix == ".safetensors":
        return _load_safetensors(path), "safetensors"
    if is_torchscript(path):
        if not allow_torchscript:   # before torch.jit.load: reading the archive would run its code
            raise torchscript_refused(path)
        try:
            with warnings.catch_warnings():   # torch marks jit.load deprecated; OpenAI ships nothing else
                warnings.simplefilter("ignore", FutureWarning)
                state = torch.jit.load(str(path), map_location="cpu").state_dict()
        except Exception as exc:
            raise ValueError(f"{path}: unreadable TorchScript archive ({first_line(exc)})") from None
        state = {k: v for k, v in state.items() if k not in OPENAI_EXTRA_KEYS}
        return state, "openai torchscript (not weights_only: TorchScript archives hold code)"
    loaded = load_torch(path)
    if not isinstance(loaded, Mapping):
        raise ValueError(f"{path}: expected a state dict or a checkpoint dict, found {type(loaded).__name__}")
    layout = "open_clip state dict"
    if isinstance(loaded.get("state_dict"), Mapping):
        loaded, layout = loaded["state_dict"], "open_clip training checkpoint"
    elif "model_config" in loaded or ("model" in loaded and "config" in loaded):
        raise ValueError(f"{path}: a PIR checkpoint, not CLIP weights (give it as evaluate.checkpoint)")
    state = _strip_prefix(loaded, "module.")
    state = {k: v for k, v in state.items() if k not in OPENAI_EXTRA_KEYS}   # OpenAI state dicts saved plainly
    if not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"{path}: not a state dict (non-tensor entries such as "
                         f"{next(k for k, v in state.items() if not isinstance(v, torch.Tensor))!r})")
    return state, layout


def load_clip_state(model: nn.Module, state: Mapping[str, torch.Tensor], where: str | os.PathLike, arch: str) -> int:
    """Strict load into an open_clip model (returns the tensors loaded); one line naming the file and
    the first mismatches otherwise."""
    own = model.state_dict()
    # buffers the model rebuilds itself (the causal attn_mask): TorchScript archives carry them as weights
    rebuilt = {name for name, _ in model.named_buffers()} - set(own)
    state = {k: v for k, v in state.items() if k not in rebuilt}
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong_shape = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
                   if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong_shape:
        parts = [f"{label} {len(keys)}: {', '.join(keys[:3])}" for label, keys in
                 (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape)) if keys]
        raise ValueError(f"{where}: weights do not fit open_clip {arch} ({'; '.join(parts)})")
    model.load_state_dict(state, strict=True)
    return len(state)


def clip_config(arch: str, **overrides: Any) -> ModelConfig:
    """The ModelConfig of a plain CLIP model of architecture ``arch`` (no PIR heads): the clip-* preset
    built on ``arch`` when there is one, with embed_dim read from open_clip's config."""
    base = next((p for p in PRESETS.values() if p.clip_model == arch), PRESETS["clip-b32"])
    model_cfg = (open_clip.get_model_config(arch) or {})
    values = {"clip_model": arch, "use_vir": False, "use_lca": False, "use_affiliation": False,
              "max_tokens": int((model_cfg.get("text_cfg") or {}).get("context_length", 77)), **overrides}
    if "embed_dim" in model_cfg and "embed_dim" not in overrides:
        values["embed_dim"] = int(model_cfg["embed_dim"])
    image_size = (model_cfg.get("vision_cfg") or {}).get("image_size")
    if isinstance(image_size, int) and "image_size" not in overrides:
        values["image_size"] = image_size
    return dataclasses.replace(base, **values)


def load_clip_checkpoint(path: str | os.PathLike, arch: str, cfg: ModelConfig | None = None,
                         log: Callable[[str], None] = print, allow_torchscript: bool = False) -> ClipPIR:
    """The CLIP weights at ``path`` (any layout of ``read_clip_state``) as a ``ClipPIR`` in eval mode.

    ``cfg`` (default: plain CLIP, ``clip_config(arch)``) says which heads sit on top; heads the
    file does not hold keep their initialisation (zero residuals: the embeddings are CLIP's own).
    ``encode_image`` takes images normalised with the checkpoint's mean/std; ``encode_text`` takes
    open_clip token ids. Prints one line: architecture, layout, tensors loaded. ``allow_torchscript``
    (not ``cfg``'s) decides whether a TorchScript archive may load (``read_clip_state``).
    """
    cfg = dataclasses.replace(cfg or clip_config(arch), clip_model=arch, clip_weights=str(path),
                              allow_torchscript=allow_torchscript)
    return ClipPIR(cfg, log=log).eval()
